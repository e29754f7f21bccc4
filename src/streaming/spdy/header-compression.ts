// SPDY/3 header-block compression: one zlib stream per direction for the whole connection, primed
// with the SPDY/3 dictionary and sync-flushed after every block, so each block decodes on arrival
// but may refer back to earlier ones. Node's zlib streams keep that context; calls are queued so
// blocks come out in the order they went in.
import { constants, createDeflate, createInflate, type Deflate, type Inflate } from 'node:zlib';
import { SPDY3_DICTIONARY } from './dictionary.ts';
import { SpdyProtocolError } from './frames.ts';

/** A decoded header block bigger than this is refused: real ones are a few hundred bytes. */
const MAX_DECODED = 256 * 1024;

abstract class ZlibPipe {
  private tail: Promise<unknown> = Promise.resolve();
  private out: Buffer[] = [];
  private outBytes = 0;
  protected readonly z: Deflate | Inflate;
  protected constructor(z: Deflate | Inflate) {
    this.z = z;
    z.on('data', (c: Buffer) => {
      this.out.push(c);
      this.outBytes += c.length;
    });
    // Errors surface through the pending call below; this keeps them from crashing the daemon.
    z.on('error', () => {});
  }

  protected run(input: Buffer, limit: number): Promise<Buffer> {
    const next = this.tail.then(
      () =>
        new Promise<Buffer>((resolve, reject) => {
          const onError = (err: Error): void => reject(new SpdyProtocolError(`SPDY header block does not decompress: ${err.message}`));
          this.z.once('error', onError);
          this.z.write(input);
          this.z.flush(constants.Z_SYNC_FLUSH, () => {
            this.z.off('error', onError);
            const result = Buffer.concat(this.out, this.outBytes);
            this.out = [];
            this.outBytes = 0;
            if (result.length > limit) reject(new SpdyProtocolError(`SPDY header block decodes to more than ${limit} bytes`));
            else resolve(result);
          });
        }),
    );
    this.tail = next.catch(() => {});
    return next;
  }

  close(): void {
    this.z.destroy();
  }
}

export class HeaderCompressor extends ZlibPipe {
  constructor() {
    super(createDeflate({ dictionary: SPDY3_DICTIONARY }));
  }
  compress(block: Buffer): Promise<Buffer> {
    return this.run(block, Infinity);
  }
}

export class HeaderDecompressor extends ZlibPipe {
  constructor() {
    super(createInflate({ dictionary: SPDY3_DICTIONARY }));
  }
  decompress(block: Buffer): Promise<Buffer> {
    return this.run(block, MAX_DECODED);
  }
}
