// Garbage collections paced by the work a thread has done: bytes passed along by a pull, or calls
// served by the CRI server (src/cri/server.ts says why). A pull's chunks (socket
// reads in the daemon, transferred 1 MiB batches and inflated output in the unpack worker) are
// off-heap memory behind small heap objects: V8 collects them only when its heap grows, not when
// their off-heap memory does, so left alone each thread held 20-40 MiB of spent chunks at the peak
// of the bench pull. Most die before a young-generation collection (a scavenge, ~1 ms) reaches
// them, so those run often and full collections (tens of ms on the daemon's heap) rarely, for what
// a scavenge promoted instead of freeing. Only when the process runs with --expose-gc
// (bin/berthd.js passes it); otherwise this does nothing.

import { trimMalloc } from './malloc-trim.ts';

const gc = (globalThis as { gc?: (options?: { type: 'minor' | 'major' }) => void }).gc;

export interface HeapCollectorOptions {
  /** A young-generation collection every this many bytes (or calls). */
  minorEvery: number;
  /** A full collection every this many bytes (or calls). */
  majorEvery: number;
  /**
   * When given, a full collection that is due runs only if, after a young one, ArrayBuffer memory
   * (the chunks) still exceeds it. Measured on the bench pull, most full collections of the daemon
   * freed 1-7 MiB of its 15-25 MiB of chunks (the rest were live: in flight to the store, the
   * worker, the unpacker) while marking its whole heap: ~0.3 CPU-s per pull, in V8's marking of
   * code and modules that never change.
   */
  bufferBudget?: number;
  /**
   * Each full collection is followed by malloc_trim (src/util/malloc-trim.ts): for work whose
   * garbage holds C++ memory that the collection frees into glibc's heap. Not for a pull, whose
   * next chunks would fault the same pages back in at once.
   */
  trimAfterMajor?: boolean;
}

export class HeapCollector {
  readonly #o: HeapCollectorOptions;
  #sinceMinor = 0;
  #sinceMajor = 0;

  constructor(options: HeapCollectorOptions) {
    this.#o = options;
  }

  /** Counts `bytes` (or calls) passed along; collects once enough have gone by since the last collection. */
  passed(bytes: number): void {
    this.#sinceMinor += bytes;
    this.#sinceMajor += bytes;
    if (this.#sinceMajor >= this.#o.majorEvery) {
      this.#sinceMajor = 0;
      this.#sinceMinor = 0;
      const budget = this.#o.bufferBudget;
      if (budget !== undefined) {
        gc?.({ type: 'minor' });
        if (process.memoryUsage().arrayBuffers <= budget) return;
      }
      gc?.({ type: 'major' });
      if (this.#o.trimAfterMajor) trimMalloc();
    } else if (this.#sinceMinor >= this.#o.minorEvery) {
      this.#sinceMinor = 0;
      gc?.({ type: 'minor' });
    }
  }
}
