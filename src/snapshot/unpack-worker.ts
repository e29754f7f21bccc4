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
import { HeapCollector } from '../util/heap-collector.ts';

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
 * Spent chunks die young: a young collection every 2 MiB frees them for ~1 ms each, a full one
 * every 16 MiB what outlived that. Full collections alone every 4 MiB cost this thread ~450 ms per
 * 100 MB (and as much again of V8's helper thread); the pacing here keeps the peak where it was.
 */
const heap = new HeapCollector(2 << 20, 16 << 20);

const port = parentPort;
if (port) {
  let input: PassThrough | undefined;
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
        heap.passed(bytes);
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
