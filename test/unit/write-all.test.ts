// writeAll: short writes are completed; a write that makes no progress fails instead of spinning.
// The target is a stand-in for a FileHandle (a kernel that returns 0 from writev cannot be had here).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeAll, type WritevTarget } from '../../src/util/write-all.ts';
import { BerthError } from '../../src/util/errors.ts';

/** Accepts at most `perCall` bytes per writev, and none once `stallAfter` bytes have gone. */
function target(perCall: number, stallAfter = Infinity): WritevTarget & { written: Buffer[] } {
  const written: Buffer[] = [];
  let total = 0;
  const t = {
    written,
    writev: async (bufs: NodeJS.ArrayBufferView[]) => {
      let n = Math.min(perCall, stallAfter - total);
      const took = n;
      for (const b of bufs as Buffer[]) {
        if (n <= 0) break;
        written.push(b.subarray(0, n));
        n -= Math.min(n, b.length);
      }
      total += took;
      return { bytesWritten: took, buffers: bufs };
    },
  };
  return t as unknown as WritevTarget & { written: Buffer[] };
}

test('short writes are resumed until every byte is out', async () => {
  const t = target(3);
  await writeAll(t, [Buffer.from('hello '), Buffer.from('world')], 'greeting');
  assert.equal(Buffer.concat(t.written).toString(), 'hello world');
});

test('a write that returns 0 bytes fails with a message instead of looping forever', async () => {
  const t = target(4, 6);
  await assert.rejects(writeAll(t, [Buffer.from('0123456789')], 'blob sha256:x'), (err: unknown) => {
    assert.ok(err instanceof BerthError);
    assert.match(err.message, /writing blob sha256:x made no progress/);
    return true;
  });
});
