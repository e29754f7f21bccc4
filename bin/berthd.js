#!/usr/bin/env node
// Package entry for `berthd`. Node 24 runs the TypeScript sources as they are (type stripping; the
// tsconfig's erasableSyntaxOnly keeps the code within what it supports), so no loader or build
// step sits between the source and the daemon. Each layer of a pull keeps inflate and blob writes
// on libuv's pool at once, so the pool is widened (from 4) before anything uses it.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(`berthd needs Node.js 24 or newer (this is ${process.version}); run hack/install-deps.sh\n`);
  process.exit(1);
}
process.env.UV_THREADPOOL_SIZE ??= '16';
// Node's compile cache (see below), named in the environment rather than only enabled by a call:
// a worker thread (the unpack worker) uses the cache only when NODE_COMPILE_CACHE names it, and
// otherwise loads Node's TypeScript stripper at each start. Measured, a worker started without it
// leaves ~15 MB more resident after it exits. Same directory as enableCompileCache() defaults to.
if (!process.env.NODE_COMPILE_CACHE) {
  const [{ tmpdir }, { join }] = await Promise.all([import('node:os'), import('node:path')]);
  process.env.NODE_COMPILE_CACHE = join(tmpdir(), 'node-compile-cache');
}
// Memory settings that only take effect at process start. glibc reads its MALLOC_* variables at its
// first allocation: 2 arenas instead of up to 8 per core (the 16 libuv threads of a pull otherwise
// leave their own arenas' memory resident long after it), and a fixed 16 KiB mmap threshold, so
// a pull's stream buffers (64 KiB socket reads and up) are mapped and unmapped one by one instead
// of fragmenting the brk heap, which only shrinks from its top: measured after a cold pull of the
// bench image, that heap kept 58 MiB at 128 KiB and 13 MiB at 16 KiB. V8 sizes its young generation and its thread pool at start. When they are not in place, berthd replaces itself with a node that has
// them (execve: same pid, same stdio, nothing left behind). BERTHD_NODE_FLAGS overrides the flags.
const TUNED_FLAGS = (process.env.BERTHD_NODE_FLAGS ?? '--max-semi-space-size=1 --v8-pool-size=1 --expose-gc').split(' ').filter(Boolean);
if (process.env.BERTHD_TUNED !== '1' && typeof process.execve === 'function') {
  await reexec(TUNED_FLAGS, {
    BERTHD_TUNED: '1',
    MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2',
    MALLOC_MMAP_THRESHOLD_: process.env.MALLOC_MMAP_THRESHOLD_ ?? '16384',
    MALLOC_TRIM_THRESHOLD_: process.env.MALLOC_TRIM_THRESHOLD_ ?? '131072',
  });
}
// Node keeps the type-stripped sources and their compiled code here (NODE_COMPILE_CACHE, else a
// directory under the OS temp dir). From the second start on, the TypeScript stripper is never
// loaded: measured, that is ~13 MB less resident memory and a faster start.
const { constants, enableCompileCache, flushCompileCache } = await import('node:module');
const cache = enableCompileCache?.();
const { main } = await import('../src/main.ts');
// A start that found the cache empty or stale (the first after an install or upgrade) has just
// loaded the stripper, which would then stay for the daemon's life. The cache now holds every
// module: write it out and start once more from it (same pid again), before anything is served.
const cacheOn = cache?.status === constants.compileCacheStatus?.ENABLED || cache?.status === constants.compileCacheStatus?.ALREADY_ENABLED;
const stripped = process.moduleLoadList?.includes('NativeModule internal/deps/amaro/dist/index');
if (cacheOn && stripped && process.env.BERTHD_TUNED === '1' && process.env.BERTHD_WARM !== '1' && typeof process.execve === 'function') {
  flushCompileCache();
  await reexec([], { BERTHD_WARM: '1' });
}
// Exit explicitly: idle keep-alive sockets to registries must not hold a stopped daemon open.
process.exit(await main(process.argv.slice(2)));

/** Replaces this process with node running this script again, with more flags and environment. */
async function reexec(nodeFlags, env) {
  const { fileURLToPath } = await import('node:url');
  const argv = [process.execPath, ...process.execArgv, ...nodeFlags, fileURLToPath(import.meta.url), ...process.argv.slice(2)];
  process.execve(process.execPath, argv, { ...process.env, ...env });
}
