// Garbage collections paced by the work a thread has done: bytes passed along by a pull, or calls
// served by the CRI server (src/cri/server.ts says why). A pull's chunks (socket
// reads in the daemon, transferred 1 MiB batches and inflated output in the unpack worker) are
// off-heap memory behind small heap objects: V8 collects them only when its heap grows, not when
// their off-heap memory does, so left alone each thread held 20-40 MiB of spent chunks at the peak
// of the bench pull. Most die before a young-generation collection (a scavenge, ~1 ms) reaches
// them, so those run often and full collections (tens of ms on the daemon's heap) rarely, for what
// a scavenge promoted instead of freeing. Only when the process runs with --expose-gc
// (bin/berthd.js passes it); otherwise this does nothing.

const gc = (globalThis as { gc?: (options?: { type: 'minor' | 'major' }) => void }).gc;

export class HeapCollector {
  readonly #minorEvery: number;
  readonly #majorEvery: number;
  readonly #bufferBudget: number | undefined;
  #sinceMinor = 0;
  #sinceMajor = 0;

  /**
   * `bufferBudget`: when given, a full collection that is due runs only if, after a young one,
   * ArrayBuffer memory (the chunks) still exceeds it. Measured on the bench pull, most full
   * collections of the daemon freed 1-7 MiB of its 15-25 MiB of chunks (the rest were live:
   * in flight to the store, the worker, the unpacker) while marking its whole heap: ~0.3 CPU-s
   * per pull, in V8's marking of code and modules that never change.
   */
  constructor(minorEveryBytes: number, majorEveryBytes: number, bufferBudget?: number) {
    this.#minorEvery = minorEveryBytes;
    this.#majorEvery = majorEveryBytes;
    this.#bufferBudget = bufferBudget;
  }

  /** Counts `bytes` (or calls) passed along; collects once enough have gone by since the last collection. */
  passed(bytes: number): void {
    this.#sinceMinor += bytes;
    this.#sinceMajor += bytes;
    if (this.#sinceMajor >= this.#majorEvery) {
      this.#sinceMajor = 0;
      this.#sinceMinor = 0;
      if (this.#bufferBudget === undefined) {
        gc?.({ type: 'major' });
        return;
      }
      gc?.({ type: 'minor' });
      if (process.memoryUsage().arrayBuffers > this.#bufferBudget) gc?.({ type: 'major' });
    } else if (this.#sinceMinor >= this.#minorEvery) {
      this.#sinceMinor = 0;
      gc?.({ type: 'minor' });
    }
  }
}
