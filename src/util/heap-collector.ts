// Full garbage collections paced by the work a thread has done: bytes passed along by a pull, or
// calls served by the CRI server (src/cri/server.ts says why). A pull's chunks (socket
// reads in the daemon, transferred 1 MiB batches in the unpack worker) outlive a young-generation
// collection while they wait in stream buffers, so they die in the old generation, which V8
// collects only when its heap grows, not when their off-heap memory does: left alone, each thread
// held 20-40 MiB of spent chunks at the peak of the bench pull. Only when the process runs with
// --expose-gc (bin/berthd.js passes it); otherwise this does nothing.

const collect = (globalThis as { gc?: () => void }).gc;

export class HeapCollector {
  readonly #every: number;
  #since = 0;

  constructor(everyBytes: number) {
    this.#every = everyBytes;
  }

  /** Counts `bytes` (or calls) passed along; collects once `everyBytes` have gone by since the last time. */
  passed(bytes: number): void {
    this.#since += bytes;
    if (this.#since < this.#every) return;
    this.#since = 0;
    collect?.();
  }
}
