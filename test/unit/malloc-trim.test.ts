// trimMalloc() (src/util/malloc-trim.ts, the addon native/malloc-trim.c) hands back memory that
// glibc keeps after free(). A child Node process makes that memory on purpose: 8 KiB ArrayBuffers
// (below glibc's mmap threshold, so from the main heap) with every 64th kept alive, the last one
// included, so that once the rest are freed the heap cannot shrink from its top.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const MODULE = fileURLToPath(new URL('../../src/util/malloc-trim.ts', import.meta.url));

const CHILD = `
import { readFileSync } from 'node:fs';
const { trimMalloc } = await import(${JSON.stringify(MODULE)});
const anonMiB = () => Number(/RssAnon:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
const blocks = [];
for (let i = 0; i < 8192; i++) blocks.push(new ArrayBuffer(8192));
const live = blocks.filter((_b, i) => i % 64 === 63);
blocks.length = 0;
const held = process.memoryUsage().arrayBuffers;
globalThis.gc();
// V8 may free the backing stores on a background thread after the collection: wait until it has.
while (process.memoryUsage().arrayBuffers > held - (48 << 20)) await new Promise((r) => setTimeout(r, 10));
const before = anonMiB();
const released = trimMalloc();
const after = anonMiB();
process.stdout.write(JSON.stringify({ before, after, released, live: live.length }));
`;

test('trimMalloc gives the free pages inside glibc heap back to the kernel', () => {
  const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', CHILD], {
    encoding: 'utf8',
    // glibc's defaults: no berthd MALLOC_* settings inherited from a caller's environment
    env: { PATH: process.env.PATH ?? '' },
    timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const { before, after, released } = JSON.parse(r.stdout) as { before: number; after: number; released: boolean | null };
  assert.notEqual(released, null, 'the addon dist/berth-malloc-trim.node is not built (hack/build-native.sh)');
  assert.equal(released, true);
  // ~63 MiB were freed; glibc kept it resident until the trim.
  assert.ok(before - after > 32, `RssAnon ${before.toFixed(1)} -> ${after.toFixed(1)} MiB: expected the trim to release more than 32 MiB`);
});
