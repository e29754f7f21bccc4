#!/usr/bin/env node
// Package entry for `berthd`: registers tsx so the TypeScript sources run as they are, then starts
// the daemon. The layer unpacker spends its time in file-system calls on libuv's pool, so the
// pool is widened before anything uses it.
process.env.UV_THREADPOOL_SIZE ??= '16';
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(`berthd needs Node.js 24 or newer (this is ${process.version}); run hack/install-deps.sh\n`);
  process.exit(1);
}
const { register } = await import('tsx/esm/api');
register();
const { main } = await import('../src/main.ts');
// Exit explicitly: idle keep-alive sockets to registries must not hold a stopped daemon open.
process.exit(await main(process.argv.slice(2)));
