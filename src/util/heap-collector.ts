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
  #sinceMinor = 0;
  #sinceMajor = 0;

  constructor(minorEveryBytes: number, majorEveryBytes: number) {
    this.#minorEvery = minorEveryBytes;
    this.#majorEvery = majorEveryBytes;
  }

  /** Counts `bytes` (or calls) passed along; collects once enough have gone by since the last collection. */
  passed(bytes: number): void {
    this.#sinceMinor += bytes;
    this.#sinceMajor += bytes;
    if (this.#sinceMajor >= this.#majorEvery) {
      this.#sinceMajor = 0;
      this.#sinceMinor = 0;
      gc?.({ type: 'major' });
    } else if (this.#sinceMinor >= this.#minorEvery) {
      this.#sinceMinor = 0;
      gc?.({ type: 'minor' });
    }
  }
}
