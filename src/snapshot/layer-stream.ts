// Stream plumbing for one layer: peek at the compression, decompress, and verify the diff ID of the
// uncompressed tar while it flows, so a layer is read once and never held in memory.
import { createHash } from 'node:crypto';
import { PassThrough, Transform, type Readable, type TransformCallback, type Writable } from 'node:stream';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { BerthError, throwMostTelling } from '../util/errors.ts';
import { unpackLayer, type UnpackStats } from './unpack.ts';

/**
 * Reads the first bytes of a stream and puts them back. Media types are not trusted for the
 * compression (some registries label plain tars as gzip); the magic bytes are.
 */
export async function peek(stream: Readable, bytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let have = 0;
  while (have < bytes) {
    const chunk = stream.read() as Buffer | null;
    if (chunk === null) {
      if (stream.readableEnded || stream.destroyed) break;
      await new Promise<void>((resolve, reject) => {
        const done = (): void => {
          stream.off('readable', done);
          stream.off('end', done);
          stream.off('error', fail);
          resolve();
        };
        const fail = (err: Error): void => {
          stream.off('readable', done);
          stream.off('end', done);
          reject(err);
        };
        stream.once('readable', done);
        stream.once('end', done);
        stream.once('error', fail);
      });
      continue;
    }
    chunks.push(chunk);
    have += chunk.length;
  }
  const head = Buffer.concat(chunks);
  if (head.length > 0) stream.unshift(head);
  return head.subarray(0, bytes);
}

/**
 * Decompressed bytes buffered ahead of the tar reader. The reader blocks in file-system calls; a
 * deep buffer lets inflate keep running on libuv's pool meanwhile instead of taking turns with it.
 */
const BUFFERED = 2 << 20;
const INFLATE_OPTIONS = { chunkSize: 256 * 1024, highWaterMark: BUFFERED };

/** A decompressor matching the stream's magic bytes: gzip, zstd, or none (plain tar). */
export function decompressorFor(head: Buffer): Transform {
  if (head[0] === 0x1f && head[1] === 0x8b) return createGunzip(INFLATE_OPTIONS);
  if (head.readUInt32LE(0) === 0xfd2fb528) return createZstdDecompress(INFLATE_OPTIONS);
  return new PassThrough({ highWaterMark: BUFFERED });
}

/** Passes bytes through and fails at the end unless their sha256 is `expected`. */
export class DigestVerifier extends Transform {
  private readonly hash = createHash('sha256');
  private readonly expected: string;
  private readonly what: string;
  constructor(expected: string, what: string) {
    super({ highWaterMark: BUFFERED });
    this.expected = expected;
    this.what = what;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    const actual = `sha256:${this.hash.digest('hex')}`;
    if (actual === this.expected) cb();
    else cb(new BerthError('internal', `${this.what}: expected digest ${this.expected}, got ${actual}; the registry served corrupt or different content`));
  }
}

/**
 * Copies every chunk into a second writable (the content store) as it passes, honouring that
 * writable's back-pressure, and ends it when the source ends.
 */
export class Tee extends Transform {
  private readonly side: Writable;
  constructor(side: Writable) {
    super();
    this.side = side;
    // Without this a failed side (disk full) would leave us waiting for a 'drain' that never comes.
    side.once('error', (err) => this.destroy(err));
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.side.write(chunk)) cb(null, chunk);
    else this.side.once('drain', () => cb(null, chunk));
  }
  override _flush(cb: TransformCallback): void {
    this.side.end(() => cb());
  }
}

/**
 * A compressed (or plain) layer stream → decompress → verify `diffId` → files in `dir`. What the
 * pool runs in the daemon's own thread for small layers.
 */
export async function unpackCompressed(input: Readable, dir: string, diffId: string, what: string): Promise<UnpackStats> {
  const decompressor = decompressorFor(await peek(input, 4));
  const results = await Promise.allSettled([pipeline(input, decompressor), unpackDecompressed(decompressor, dir, diffId, what)]);
  // Stream side first: a digest mismatch says more than the unpacker seeing its input cut off.
  throwMostTelling(results);
  return (results[1] as PromiseFulfilledResult<UnpackStats>).value;
}

/**
 * The readable side of a decompressor (from decompressorFor) → verify `diffId` → files in `dir`.
 * The unpack worker writes into the decompressor itself, so it knows when each input buffer has
 * been consumed and can hand it back for reuse.
 */
export async function unpackDecompressed(decompressed: Readable, dir: string, diffId: string, what: string): Promise<UnpackStats> {
  const verifier = new DigestVerifier(diffId, what);
  const results = await Promise.allSettled([pipeline(decompressed, verifier), unpackLayer(verifier, dir)]);
  throwMostTelling(results);
  return (results[1] as PromiseFulfilledResult<UnpackStats>).value;
}
