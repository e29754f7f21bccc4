// SPDY/3 header-block compression: one zlib stream per direction for the whole connection,
// primed with the SPDY/3 dictionary, with a sync flush after every block. Both directions are
// synchronous so frames keep their order without queues:
// - sending: blocks go out as stored (uncompressed) deflate blocks, each followed by the empty
//   stored block of a sync flush. That is valid zlib for any peer; header blocks are tens of bytes,
//   so compressing them would save nothing worth a trip to the thread pool.
// - receiving: every block starts on a block boundary (the peer flushed), so it can be inflated on
//   its own as raw deflate with the last 32 KiB of everything decoded so far as the dictionary.
import { constants, inflateRawSync } from 'node:zlib';
import { SPDY3_DICTIONARY } from './dictionary.ts';
import { SpdyProtocolError } from './frames.ts';

/** A decoded header block bigger than this is refused: real ones are a few hundred bytes. */
const MAX_DECODED = 256 * 1024;
/** deflate's window: the most a back-reference can reach. */
const WINDOW = 32 * 1024;
const MAX_STORED = 0xffff;

/** Adler-32 (RFC 1950): how a zlib stream names its preset dictionary. */
function adler32(buf: Buffer): number {
  let a = 1;
  let b = 0;
  for (const byte of buf) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}

export class HeaderCompressor {
  private started = false;

  compress(block: Buffer): Buffer {
    const parts: Buffer[] = [];
    if (!this.started) {
      this.started = true;
      // CMF 0x78 (deflate, 32 KiB window), FLG with FDICT, then the dictionary's ID.
      const head = Buffer.from([0x78, 0xbb, 0, 0, 0, 0]);
      head.writeUInt32BE(adler32(SPDY3_DICTIONARY), 2);
      parts.push(head);
    }
    for (let at = 0; at < block.length; at += MAX_STORED) parts.push(stored(block.subarray(at, at + MAX_STORED)));
    parts.push(stored(Buffer.alloc(0))); // the sync-flush marker: peers hand out what they have
    return Buffer.concat(parts);
  }
}

/** One non-final stored deflate block: header bits on a byte boundary, LEN, NLEN, the bytes. */
function stored(data: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h.writeUInt16LE(data.length, 1);
  h.writeUInt16LE(~data.length & 0xffff, 3);
  return Buffer.concat([h, data]);
}

export class HeaderDecompressor {
  private window: Buffer = SPDY3_DICTIONARY;
  private started = false;

  decompress(block: Buffer): Buffer {
    let raw = block;
    if (!this.started) {
      this.started = true;
      if (block.length < 2 || ((block[0] as number) & 0x0f) !== 8 || ((block[0] as number) * 256 + (block[1] as number)) % 31 !== 0) {
        throw new SpdyProtocolError('SPDY header block does not start with a zlib header');
      }
      const fdict = ((block[1] as number) & 0x20) !== 0;
      if (fdict && (block.length < 6 || block.readUInt32BE(2) !== adler32(SPDY3_DICTIONARY))) {
        throw new SpdyProtocolError('SPDY header block names a dictionary other than SPDY/3');
      }
      raw = block.subarray(fdict ? 6 : 2);
    }
    let out: Buffer;
    try {
      out = inflateRawSync(raw, { dictionary: this.window, finishFlush: constants.Z_SYNC_FLUSH, maxOutputLength: MAX_DECODED });
    } catch (err) {
      throw new SpdyProtocolError(`SPDY header block does not decompress: ${(err as Error).message}`);
    }
    const joined = Buffer.concat([this.window, out]);
    this.window = joined.subarray(Math.max(0, joined.length - WINDOW));
    return out;
  }
}
