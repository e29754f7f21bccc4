// Writing every byte of a list of buffers with writev. A write may be short (a signal, a nearly full
// disk); then the rest is written. A write that makes no progress at all fails instead of looping.
import { writevSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { BerthError } from './errors.ts';

/** Only what `handle.writev` offers, so callers can pass a FileHandle. */
export type WritevTarget = Pick<FileHandle, 'writev'>;

/** The buffers still to write after the first `done` bytes went out. */
function rest(bufs: Buffer[], done: number, what: string): Buffer[] {
  if (done === 0) throw new BerthError('internal', `writing ${what} made no progress (the write returned 0 bytes)`);
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (done >= b.length) done -= b.length;
    else {
      out.push(done > 0 ? b.subarray(done) : b);
      done = 0;
    }
  }
  return out;
}

const total = (bufs: Buffer[]): number => bufs.reduce((n, b) => n + b.length, 0);

export async function writeAll(handle: WritevTarget, bufs: Buffer[], what: string): Promise<void> {
  for (let left = total(bufs); left > 0; ) {
    const { bytesWritten } = await handle.writev(bufs);
    left -= bytesWritten;
    if (left > 0) bufs = rest(bufs, bytesWritten, what);
  }
}

export function writeAllSync(fd: number, bufs: Buffer[], what: string): void {
  for (let left = total(bufs); left > 0; ) {
    const n = writevSync(fd, bufs);
    left -= n;
    if (left > 0) bufs = rest(bufs, n, what);
  }
}
