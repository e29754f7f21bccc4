#!/usr/bin/env node
// Package entry for `berthd`. Node 24 runs the TypeScript sources as they are (type stripping; the
// tsconfig's erasableSyntaxOnly keeps the code within what it supports), so no loader or build
// step sits between the source and the daemon. Each layer of a pull keeps inflate and blob writes
// on libuv's pool at once, so the pool is widened (from 4) before anything uses it.
process.env.UV_THREADPOOL_SIZE ??= '16';
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(`berthd needs Node.js 24 or newer (this is ${process.version}); run hack/install-deps.sh\n`);
  process.exit(1);
}
const { main } = await import('../src/main.ts');
// Exit explicitly: idle keep-alive sockets to registries must not hold a stopped daemon open.
process.exit(await main(process.argv.slice(2)));
