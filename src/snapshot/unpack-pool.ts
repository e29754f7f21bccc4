// A small pool of unpack worker threads (see unpack-worker.ts) and the Writable that feeds one.
// Workers exist only while there is work: one starts when a big layer needs it, is reused by the
// layers and pulls that follow, and exits after a few idle seconds, so an idle daemon holds no
// thread heaps. Small layers (the pause image, busybox-sized apps) unpack in the daemon's own
// thread: starting a worker would cost more than the layer, and they block it only briefly. So
// does one big layer at a time while every worker is busy, rather than queue behind them.
import { Worker } from 'node:worker_threads';
import { pipeline } from 'node:stream/promises';
import type { UnpackStats } from './unpack.ts';
import type { InMessage, OutMessage, WireError } from './unpack-worker.ts';
import { PassThrough, Transform, Writable, type Readable, type TransformCallback } from 'node:stream';
import { BerthError, throwMostTelling } from '../util/errors.ts';
import { HeapCollector } from '../util/heap-collector.ts';
import { trimMalloc } from '../util/malloc-trim.ts';

const WORKER_URL = new URL('./unpack-worker.ts', import.meta.url);
/** Network chunks are copied into buffers of this size; one message carries each full one to the worker. */
const BATCH = 1 << 20;
/**
 * Compressed bytes posted but not yet consumed by the worker's decompressor; past this the download
 * waits. It bounds the transfer buffers too (unpack-worker.ts returns each once consumed). Counted
 * that way, 4 MiB left the downloads waiting on the decompressor (bench pull median 1.45 s, as
 * before the buffers were reused); 8 MiB: 1.23 s.
 */
const MAX_IN_FLIGHT = 8 << 20;
/**
 * How long a failed layer's worker gets to stop (its tar reader ends, its mknod children exit)
 * before it is terminated instead. Either way the caller hears of the failure only afterwards.
 */
const STOP_GRACE_MS = 30_000;
/** Layers up to this compressed size unpack in the calling thread. */
export const INLINE_MAX = 2 << 20;
/** An idle worker exits after this long, giving its heap back. */
const IDLE_EXIT_MS = 5_000;

/**
 * The daemon's young generation is collected every 1 MiB of big-layer bytes, its whole heap every
 * 8 MiB (HeapCollector says why) but only while more than 20 MiB of ArrayBuffers (the chunks) are
 * held after the young one. A full collection of its ~23 MiB heap takes 20-60 ms of the main
 * thread on the loaded 2-core VM, a young one ~1 ms; most spent chunks die young, so the frequent
 * cheap one frees them and the full one only what outlived it. Measured on the bench pull against
 * full collections alone every 8 MiB: main thread CPU ~1.15 -> ~0.75 s, peak RSS ~150-155 MiB kept.
 * The budget then took the pull's CPU (both threads) from ~2.1 to ~1.75 s, peak RSS ~136 -> ~141
 * MiB (medians of 6 runs); at 16 MiB (8 in the worker) nearly every full collection still ran.
 */
const heap = new HeapCollector({ minorEvery: 1 << 20, majorEvery: 8 << 20, bufferBudget: 20 << 20 });

function fromWire(e: WireError): Error {
  if (e.kind) return new BerthError(e.kind, e.message);
  return Object.assign(new Error(e.message), e.code ? { code: e.code } : {}, e.syscall ? { syscall: e.syscall } : {});
}

/** Streams compressed layer bytes into a worker; finishes once the worker has written every file. */
class WorkerSink extends Writable {
  private readonly worker: Worker;
  private inFlight = 0;
  /** The buffer being filled, and how much of it is. */
  private batch: Buffer | undefined;
  private batchBytes = 0;
  /**
   * Buffers the worker has handed back, to fill again (unpack-worker.ts). At most what is in flight
   * at once, and dropped with the sink when its layer is done.
   */
  private readonly spare: ArrayBuffer[] = [];
  private waitingForAck: (() => void) | undefined;
  private finalCallback: ((err?: Error | null) => void) | undefined;
  private outcome: { stats: UnpackStats } | { error: Error } | undefined;
  private markSettled: () => void = () => undefined;
  /** Resolves once the worker has reported: from then on it no longer touches the layer's files. */
  readonly settledP = new Promise<void>((resolve) => {
    this.markSettled = resolve;
  });
  stats: UnpackStats | undefined;

  constructor(worker: Worker, start: Omit<Extract<InMessage, { type: 'start' }>, 'type'>) {
    super({ highWaterMark: 1 << 20 });
    this.worker = worker;
    worker.on('message', this.onMessage);
    worker.once('error', this.onWorkerError);
    this.send({ type: 'start', ...start });
  }

  private send(msg: InMessage): void {
    this.worker.postMessage(msg);
  }

  private readonly onMessage = (msg: OutMessage): void => {
    if (msg.type === 'ack') {
      this.inFlight -= msg.bytes;
      if (msg.buffer && msg.buffer.byteLength === BATCH) this.spare.push(msg.buffer);
      if (this.inFlight < MAX_IN_FLIGHT / 2 && this.waitingForAck) {
        const resume = this.waitingForAck;
        this.waitingForAck = undefined;
        resume();
      }
      return;
    }
    this.settle(msg.type === 'done' ? { stats: msg.stats } : { error: fromWire(msg.error) });
  };

  private readonly onWorkerError = (err: Error): void => this.settle({ error: err });

  /** The worker's verdict: completes the stream, or fails it so the pipeline sees why. */
  private settle(outcome: { stats: UnpackStats } | { error: Error }): void {
    if (this.outcome) return;
    this.outcome = outcome;
    this.markSettled();
    this.worker.off('message', this.onMessage);
    this.worker.off('error', this.onWorkerError);
    const resume = this.waitingForAck;
    this.waitingForAck = undefined;
    if ('stats' in outcome) {
      this.stats = outcome.stats;
      this.finalCallback?.();
    } else if (this.finalCallback) {
      this.finalCallback(outcome.error);
    } else {
      this.destroy(outcome.error);
    }
    resume?.();
  }

  get settled(): boolean {
    return this.outcome !== undefined;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    heap.passed(chunk.length);
    if (this.outcome) {
      // The worker already failed (or finished early): swallow the rest; _final reports it.
      cb();
      return;
    }
    for (let at = 0; at < chunk.length; ) {
      this.batch ??= Buffer.from(this.spare.pop() ?? new ArrayBuffer(BATCH));
      const n = chunk.copy(this.batch, this.batchBytes, at);
      at += n;
      this.batchBytes += n;
      if (this.batchBytes === BATCH) this.flush();
    }
    if (this.inFlight < MAX_IN_FLIGHT) cb();
    else this.waitingForAck = () => cb();
  }

  /**
   * Posts the filled part of the batch buffer. Copying into it is the one copy (network chunks
   * may share pooled memory and are still being written to the content store); the buffer is ours
   * alone, so it is transferred to the worker rather than copied again, and comes back with the
   * worker's ack.
   */
  private flush(): void {
    if (this.batch === undefined || this.batchBytes === 0) return;
    const data = new Uint8Array(this.batch.buffer, 0, this.batchBytes);
    this.inFlight += this.batchBytes;
    this.batch = undefined;
    this.batchBytes = 0;
    this.worker.postMessage({ type: 'chunk', data } satisfies InMessage, [data.buffer as ArrayBuffer]);
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.outcome) {
      cb('error' in this.outcome ? this.outcome.error : null);
      return;
    }
    this.flush();
    this.finalCallback = cb;
    this.send({ type: 'end' });
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.outcome) this.send({ type: 'abort' });
    cb(err);
  }
}

function settledWithin(sink: WorkerSink, ms: number): Promise<boolean> {
  if (sink.settled) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    void sink.settledP.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

export class UnpackPool {
  private readonly idle: Worker[] = [];
  private readonly idleTimers = new Map<Worker, NodeJS.Timeout>();
  private readonly waiters: Array<(w: Worker) => void> = [];
  private readonly all = new Set<Worker>();
  private readonly size: number;
  /** A big layer is unpacking in this thread (see unpack()). */
  private bigHere = false;

  constructor(size: number) {
    this.size = size;
  }

  /** Worker threads alive right now (busy or about to exit). */
  get workers(): number {
    return this.all.size;
  }

  /**
   * Starts workers for `layers` big layers about to be fetched (up to the pool's size), so their
   * start-up overlaps the downloads' first round trips instead of delaying the first unpack.
   */
  prestart(layers: number): void {
    const want = Math.min(layers, this.size) - this.all.size;
    for (let i = 0; i < want; i++) void this.release(this.spawn(), true);
  }

  private spawn(): Worker {
    // The worker finds Node's compile cache through NODE_COMPILE_CACHE, which bin/berthd.js sets:
    // a start from the cache costs ~40 ms of CPU instead of ~100.
    const worker = new Worker(WORKER_URL);
    this.all.add(worker);
    worker.once('exit', () => {
      this.all.delete(worker);
      this.forgetIdle(worker);
      // The thread's malloc memory is free now but, below live chunks, stays resident in glibc's
      // arenas (measured after the bench pull: ~0.8 MiB); hand it back once the last worker is gone.
      if (this.all.size === 0) trimMalloc();
    });
    return worker;
  }

  private forgetIdle(worker: Worker): void {
    const i = this.idle.indexOf(worker);
    if (i >= 0) this.idle.splice(i, 1);
    clearTimeout(this.idleTimers.get(worker));
    this.idleTimers.delete(worker);
  }

  private async acquire(): Promise<Worker> {
    const ready = this.idle.pop();
    if (ready) {
      this.forgetIdle(ready);
      ready.ref();
      return ready;
    }
    if (this.all.size < this.size) return this.spawn();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private async release(worker: Worker, healthy: boolean): Promise<void> {
    if (!healthy) {
      // A worker that did not stop in time may still hold half a stream: replace it once it is
      // gone, and hand the replacement to whoever is waiting, or that layer would wait forever.
      this.all.delete(worker);
      await worker.terminate();
      worker = this.spawn();
    }
    const next = this.waiters.shift();
    if (next) {
      next(worker);
      return;
    }
    worker.unref();
    this.idle.push(worker);
    const timer = setTimeout(() => {
      this.forgetIdle(worker);
      this.all.delete(worker);
      void worker.terminate();
    }, IDLE_EXIT_MS);
    timer.unref();
    this.idleTimers.set(worker, timer);
  }

  /**
   * Pipes `source` through `through` (e.g. a tee into the content store) into a worker that
   * decompresses, verifies `diffId` and unpacks into `dir`; a layer of at most INLINE_MAX
   * compressed bytes (`size`, when known) is unpacked in this thread instead, and so is a bigger
   * one while every worker is busy and no other big layer is unpacking here.
   */
  async unpack(dir: string, source: Readable, through: Transform[], diffId: string, what: string, size?: number): Promise<UnpackStats> {
    // The pipeline below reports the source's errors; until it is attached (while this layer waits
    // for a worker) this keeps a dropped or cancelled download from being an uncaught exception.
    source.on('error', () => undefined);
    if (size !== undefined && size <= INLINE_MAX) return unpackHere(dir, source, through, diffId, what);
    if (this.idle.length === 0 && this.all.size >= this.size && !this.bigHere) {
      // Every worker is busy: this thread is the spare core. Measured on the 2-core VM with the
      // bench image (5 big layers, one worker): the pull's wall time 1.2-1.4 s -> 1.1-1.2 s, where
      // a second worker would cost ~25 MiB more. One layer at a time, so the event loop keeps
      // serving (the unpacker yields every few ms) and the heap holds one layer's buffers.
      this.bigHere = true;
      try {
        return await unpackHere(dir, source, [...through, new HeapPacer()], diffId, what);
      } finally {
        this.bigHere = false;
      }
    }
    const worker = await this.acquire();
    const sink = new WorkerSink(worker, { dir, diffId, what });
    try {
      await pipeline([source, ...through, sink]);
      if (!sink.stats) throw new BerthError('internal', `${what}: unpack worker ended without a result`);
      return sink.stats;
    } finally {
      // On failure (a dropped download, a full disk) the worker was told to abort; the caller will
      // delete `dir` next, so wait until the worker has stopped writing into it.
      await this.release(worker, await settledWithin(sink, STOP_GRACE_MS));
    }
  }

  async close(): Promise<void> {
    for (const timer of this.idleTimers.values()) clearTimeout(timer);
    this.idleTimers.clear();
    await Promise.all([...this.all].map((w) => w.terminate()));
  }
}

/** Counts a big layer's bytes toward this thread's collections, as WorkerSink does for the bytes it forwards. */
class HeapPacer extends Transform {
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    heap.passed(chunk.length);
    cb(null, chunk);
  }
}

/** The small-layer (and spare-core) path: the same stream pipeline a worker runs, in this thread. */
async function unpackHere(dir: string, source: Readable, through: Transform[], diffId: string, what: string): Promise<UnpackStats> {
  // Loaded on first use: a daemon that never unpacks a small layer does not hold the tar reader.
  const { unpackCompressed } = await import('./layer-stream.ts');
  const pass = new PassThrough({ highWaterMark: 1 << 20 });
  const results = await Promise.allSettled([pipeline([source, ...through, pass]), unpackCompressed(pass, dir, diffId, what)]);
  // Both sides have stopped (the unpacker waits for its children): `dir` is the caller's to remove.
  throwMostTelling(results);
  return (results[1] as PromiseFulfilledResult<UnpackStats>).value;
}
