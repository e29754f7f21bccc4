// Worker-thread side of layer unpacking. The main thread streams the compressed layer in; this
// thread decompresses it, checks its diff ID and writes the files. Creating ~10k files is mostly
// kernel time spent in blocking syscalls; doing it here keeps the daemon's event loop (gRPC, HTTP,
// hashing) free and lets several layers use several cores.
//
// Protocol (one layer per worker at a time):
//   in:  {type:'start', dir, diffId, what}  {type:'chunk', data}*  {type:'end'} | {type:'abort'}
//   out: {type:'ack', bytes}*  then  {type:'done', stats} | {type:'error', error}
import { parentPort } from 'node:worker_threads';
import { PassThrough } from 'node:stream';
import { unpackCompressed } from './layer-stream.ts';
import type { UnpackStats } from './unpack.ts';
import { BerthError, type ErrorKind } from '../util/errors.ts';

export interface StartMessage {
  type: 'start';
  dir: string;
  diffId: string;
  what: string;
}
export type InMessage = StartMessage | { type: 'chunk'; data: Uint8Array } | { type: 'end' } | { type: 'abort' };

/** An error as it crosses the thread boundary: enough to rebuild a BerthError or an errno error. */
export interface WireError {
  message: string;
  kind?: ErrorKind;
  code?: string;
  syscall?: string;
}
export type OutMessage = { type: 'ack'; bytes: number } | { type: 'done'; stats: UnpackStats } | { type: 'error'; error: WireError };

function toWire(err: unknown): WireError {
  if (err instanceof BerthError) return { message: err.message, kind: err.kind };
  const e = err as NodeJS.ErrnoException;
  return { message: e?.message ?? String(err), ...(e?.code ? { code: e.code } : {}), ...(e?.syscall ? { syscall: e.syscall } : {}) };
}

/**
 * Chunks arrive as transferred 1 MiB buffers that outlive a young-generation collection while
 * they wait in the stream buffers, so they die in the old generation, which V8 collects only
 * when its heap (not their memory) grows: left alone, a worker holds 20-40 MiB of spent chunks.
 * A full collection of this small heap every 4 MiB (a few ms; measured, 25-30 MiB off the peak
 * of the bench pull) bounds that. Only when the daemon runs with
 * --expose-gc (bin/berthd.js).
 */
const COLLECT_EVERY = 4 << 20;
const collect = (globalThis as { gc?: () => void }).gc;

const port = parentPort;
if (port) {
  let input: PassThrough | undefined;
  let received = 0;
  const post = (msg: OutMessage): void => port.postMessage(msg);
  port.on('message', (msg: InMessage) => {
    switch (msg.type) {
      case 'start': {
        const stream = new PassThrough({ highWaterMark: 1 << 20 });
        input = stream;
        unpackCompressed(stream, msg.dir, msg.diffId, msg.what).then(
          (stats) => post({ type: 'done', stats }),
          (err: unknown) => {
            stream.destroy();
            post({ type: 'error', error: toWire(err) });
          },
        );
        break;
      }
      case 'chunk': {
        const bytes = msg.data.byteLength;
        if (!input || input.destroyed) post({ type: 'ack', bytes });
        else input.write(msg.data, () => post({ type: 'ack', bytes }));
        received += bytes;
        if (received >= COLLECT_EVERY) {
          received = 0;
          collect?.();
        }
        break;
      }
      case 'end':
        input?.end();
        break;
      case 'abort':
        input?.destroy(new Error('layer download aborted'));
        break;
    }
  });
}
