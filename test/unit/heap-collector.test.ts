// HeapCollector's pacing: young-generation collections often, full ones rarely, counted in bytes.
// V8's gc() exists only under --expose-gc, so the test puts a recorder in its place before the
// module reads it.
import { test } from 'node:test';
import assert from 'node:assert/strict';

type HeapCollectorClass = typeof import('../../src/util/heap-collector.ts').HeapCollector;

/** Runs `body` with gc() recording each call's type into `calls`, on a fresh copy of the module. */
async function withGcRecorder(tag: string, body: (HeapCollector: HeapCollectorClass, calls: string[]) => void): Promise<void> {
  const calls: string[] = [];
  const g = globalThis as { gc?: (options?: { type: string }) => void };
  const saved = g.gc;
  g.gc = (options) => {
    calls.push(options?.type ?? 'default');
  };
  try {
    const { HeapCollector } = (await import(`../../src/util/heap-collector.ts?${tag}=${Date.now()}`)) as { HeapCollector: HeapCollectorClass };
    body(HeapCollector, calls);
  } finally {
    if (saved === undefined) delete g.gc;
    else g.gc = saved;
  }
}

test('collects the young generation every minor step and the whole heap every major step', async () => {
  await withGcRecorder('recorder', (HeapCollector, calls) => {
    const heap = new HeapCollector({ minorEvery: 2 << 20, majorEvery: 8 << 20 });
    for (let i = 0; i < 16; i++) heap.passed(1 << 20);
    // 16 MiB in 1 MiB steps: full at 8 and 16, young at 2, 4, 6 and 10, 12, 14.
    assert.deepEqual(calls, ['minor', 'minor', 'minor', 'major', 'minor', 'minor', 'minor', 'major']);
    heap.passed(512 << 10);
    assert.equal(calls.length, 8, 'less than a minor step collects nothing');
  });
});

test('with a buffer budget, a due full collection runs only while ArrayBuffer memory exceeds it', async () => {
  await withGcRecorder('budget', (HeapCollector, calls) => {
    const heap = new HeapCollector({ minorEvery: 2 << 20, majorEvery: 8 << 20, bufferBudget: process.memoryUsage().arrayBuffers + (16 << 20) });
    for (let i = 0; i < 16; i++) heap.passed(1 << 20);
    // Under budget: where a full collection was due (8, 16 MiB) a young one runs instead.
    assert.deepEqual(calls, ['minor', 'minor', 'minor', 'minor', 'minor', 'minor', 'minor', 'minor']);
    calls.length = 0;
    const held = Buffer.alloc(32 << 20); // the recorder frees nothing: still held at the check
    for (let i = 0; i < 8; i++) heap.passed(1 << 20);
    assert.deepEqual(calls, ['minor', 'minor', 'minor', 'minor', 'major'], 'over budget: young first, then the whole heap');
    assert.equal(held.length, 32 << 20);
  });
});
