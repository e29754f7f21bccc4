// Worker-thread side of layer unpacking. The main thread streams the compressed layer in; this
// thread decompresses it, checks its diff ID and writes the files. Creating ~10k files is mostly
// kernel time spent in blocking syscalls; doing it here keeps the daemon's event loop (gRPC, HTTP,
// hashing) free and lets several layers use several cores.
//
// Protocol (one layer per worker at a time):
//   in:  {type:'start', dir, diffId, what}  {type:'chunk', data}*  {type:'end'} | {type:'abort'}
//   out: {type:'ack', bytes, buffer?}*  then  {type:'done', stats} | {type:'error', error}
// A chunk's buffer is transferred here and, once the decompressor has consumed it, transferred
// back with its ack for the sender to fill again: the bytes cross threads without a fresh
// allocation per batch (fresh memory costs a page fault per 4 KiB, ~0.7 ms per MiB here).
import { parentPort } from 'node:worker_threads';
import { PassThrough, type Transform } from 'node:stream';
import { decompressorFor, unpackDecompressed } from './layer-stream.ts';
import type { UnpackStats } from './unpack.ts';
import { BerthError, type ErrorKind } from '../util/errors.ts';
import { HeapCollector } from '../util/heap-collector.ts';

export interface StartMessage {
  type: 'start';
  dir: string;
  diffId: string;
  what: string;
}
export type InMessage = StartMessage | { type: 'chunk'; data: Uint8Array } | { type: 'end' } | { type: 'abort' };

/** Bytes the compression is detected from (decompressorFor). */
const MAGIC = 4;

/** An error as it crosses the thread boundary: enough to rebuild a BerthError or an errno error. */
export interface WireError {
  message: string;
  kind?: ErrorKind;
  code?: string;
  syscall?: string;
}
export type OutMessage = { type: 'ack'; bytes: number; buffer?: ArrayBuffer } | { type: 'done'; stats: UnpackStats } | { type: 'error'; error: WireError };

function toWire(err: unknown): WireError {
  if (err instanceof BerthError) return { message: err.message, kind: err.kind };
  const e = err as NodeJS.ErrnoException;
  return { message: e?.message ?? String(err), ...(e?.code ? { code: e.code } : {}), ...(e?.syscall ? { syscall: e.syscall } : {}) };
}

/**
 * Spent chunks die young: a young collection every 2 MiB frees them for ~1 ms each, a full one
 * every 16 MiB what outlived that, when more than 12 MiB of ArrayBuffers are still held (see
 * unpack-pool.ts). Full collections alone every 4 MiB cost this thread ~450 ms per 100 MB (and as
 * much again of V8's helper thread); the pacing here keeps the peak where it was.
 */
const heap = new HeapCollector({ minorEvery: 2 << 20, majorEvery: 16 << 20, bufferBudget: 12 << 20 });

/** One layer: its first bytes wait until the compression can be told, then go to the decompressor. */
class Layer {
  readonly #start: StartMessage;
  readonly #post: (msg: OutMessage) => void;
  #head: Uint8Array[] = [];
  #headBytes = 0;
  #decompressor: Transform | undefined;
  /** A plain tar passes through, and the tar reader may still hold its bytes: those buffers are not handed back. */
  #reuse = false;
  #failed = false;

  constructor(start: StartMessage, post: (msg: OutMessage) => void) {
    this.#start = start;
    this.#post = post;
  }

  chunk(data: Uint8Array): void {
    heap.passed(data.byteLength);
    if (this.#failed) {
      this.#post({ type: 'ack', bytes: data.byteLength });
      return;
    }
    if (this.#decompressor) {
      this.#write(data);
      return;
    }
    this.#head.push(data);
    this.#headBytes += data.byteLength;
    if (this.#headBytes >= MAGIC) this.#open();
  }

  end(): void {
    if (this.#failed) return;
    if (!this.#decompressor) this.#open();
    this.#decompressor?.end();
  }

  abort(): void {
    this.#failed = true;
    this.#decompressor?.destroy(new Error('layer download aborted'));
  }

  #open(): void {
    const first = Buffer.concat(this.#head.map((d) => Buffer.from(d.buffer, d.byteOffset, d.byteLength)), this.#headBytes);
    const decompressor = decompressorFor(first.length >= MAGIC ? first : Buffer.concat([first, Buffer.alloc(MAGIC)]));
    this.#decompressor = decompressor;
    this.#reuse = !(decompressor instanceof PassThrough);
    const { dir, diffId, what } = this.#start;
    unpackDecompressed(decompressor, dir, diffId, what).then(
      (stats) => this.#post({ type: 'done', stats }),
      (err: unknown) => {
        this.#failed = true;
        decompressor.destroy();
        this.#post({ type: 'error', error: toWire(err) });
      },
    );
    for (const data of this.#head) this.#write(data);
    this.#head = [];
  }

  #write(data: Uint8Array): void {
    const decompressor = this.#decompressor!;
    const bytes = data.byteLength;
    if (decompressor.destroyed) {
      this.#post({ type: 'ack', bytes });
      return;
    }
    // The callback runs once the decompressor has consumed every byte of `data` (or failed): only
    // then may the buffer be refilled.
    decompressor.write(Buffer.from(data.buffer, data.byteOffset, bytes), (err) => {
      const buffer = data.buffer;
      if (err || !this.#reuse || !(buffer instanceof ArrayBuffer)) this.#post({ type: 'ack', bytes });
      else this.#post({ type: 'ack', bytes, buffer });
    });
  }
}

const port = parentPort;
if (port) {
  let layer: Layer | undefined;
  const post = (msg: OutMessage): void => port.postMessage(msg, msg.type === 'ack' && msg.buffer ? [msg.buffer] : []);
  port.on('message', (msg: InMessage) => {
    switch (msg.type) {
      case 'start':
        layer = new Layer(msg, post);
        break;
      case 'chunk':
        if (layer) layer.chunk(msg.data);
        else post({ type: 'ack', bytes: msg.data.byteLength });
        break;
      case 'end':
        layer?.end();
        break;
      case 'abort':
        layer?.abort();
        break;
    }
  });
}
