// Lets Go gRPC clients of the kubelet 1.26–1.30 era talk to berth. They send the unix socket path
// as the HTTP/2 `:authority` (e.g. `/run/berth/berth.sock`); Node's HTTP/2 layer (nghttp2) refuses
// a `/` there and resets every stream before grpc-js sees the call. containerd and CRI-O don't
// notice because Go's server doesn't check. Newer kubelets send `localhost`.
//
// This Transform sits on the client→server bytes of each connection. It decodes every request
// header block with a per-connection HPACK decoder (mirroring the client's encoder), swaps an
// invalid `:authority` for `localhost`, and re-emits the block as plain literals "without
// indexing", so the server's HPACK table stays empty and can never drift from the client's.
// All other frames pass through byte for byte.
//
// A client's `:authority` is fixed per connection (gRPC takes it from the dial target). So when
// the first header block needs no rewrite it goes through verbatim, and from then on the whole
// connection does, unparsed: the server's HPACK decoder has seen every byte the client's encoder
// produced, so their tables agree. Only connections that were rewritten once stay decoded, which
// keeps the per-call cost of every other client at that of a plain pipe.
import { Transform, type TransformCallback } from 'node:stream';
import hpack, { type Decompressor, type HeaderField } from 'hpack.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const FRAME_HEADER = 9;
const TYPE_HEADERS = 0x1;
const TYPE_PUSH_PROMISE = 0x5;
const TYPE_CONTINUATION = 0x9;
const FLAG_END_STREAM = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;
/** The server's SETTINGS_MAX_FRAME_SIZE (HTTP/2's default, which grpc-js keeps). */
const MAX_FRAME = 16384;
/** The server's SETTINGS_HEADER_TABLE_SIZE (default), which bounds the client's encoder table. */
const HEADER_TABLE_SIZE = 4096;
/** Characters nghttp2 accepts in `:authority` (RFC 3986 reg-name, IPv6 brackets, port, userinfo). */
const AUTHORITY_OK = /^[A-Za-z0-9\-._~!$&'()*+,;=:@[\]%]*$/;

interface HeaderBlock {
  type: number;
  flags: number;
  streamId: number;
  /** PUSH_PROMISE's promised stream ID and/or HEADERS' priority fields, kept verbatim. */
  prefix: Buffer;
  fragments: Buffer[];
  /** The frames as received, for passing the block on verbatim. */
  raw: Buffer[];
}

/** HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function hpackInt(value: number, prefixBits: number, flags: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [flags | value];
  const out = [flags | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

/** A string literal without Huffman coding. */
function hpackString(text: string): Buffer {
  const bytes = Buffer.from(text, 'latin1');
  return Buffer.concat([Buffer.from(hpackInt(bytes.length, 7, 0)), bytes]);
}

export class AuthorityRewriter extends Transform {
  private pending: Buffer = Buffer.alloc(0);
  private prefaceSeen = false;
  /**
   * Not HTTP/2 after all, or its first header block needed no rewrite: pass everything through
   * (the server then answers a non-HTTP/2 client itself).
   */
  private passthrough = false;
  /** A header block was re-encoded: the server's HPACK table no longer mirrors the client's. */
  private reencoded = false;
  private block: HeaderBlock | undefined;
  private readonly decoder: Decompressor = hpack.decompressor.create({ table: { size: HEADER_TABLE_SIZE } });
  /** How many `:authority` values were replaced (for tests and debug logs). */
  rewrites = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.passthrough) {
      cb(null, chunk);
      return;
    }
    this.pending = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    try {
      const out: Buffer[] = [];
      if (!this.prefaceSeen) {
        if (this.pending.length < PREFACE.length) {
          cb();
          return;
        }
        this.prefaceSeen = true;
        if (!this.pending.subarray(0, PREFACE.length).equals(PREFACE)) {
          this.passthrough = true;
          const all = this.pending;
          this.pending = Buffer.alloc(0);
          cb(null, all);
          return;
        }
        out.push(this.pending.subarray(0, PREFACE.length));
        this.pending = this.pending.subarray(PREFACE.length);
      }
      while (this.pending.length >= FRAME_HEADER) {
        if (this.passthrough) {
          out.push(this.pending);
          this.pending = Buffer.alloc(0);
          break;
        }
        const length = this.pending.readUIntBE(0, 3);
        if (this.pending.length < FRAME_HEADER + length) break;
        out.push(...this.frame(this.pending.subarray(0, FRAME_HEADER + length)));
        this.pending = this.pending.subarray(FRAME_HEADER + length);
      }
      cb(null, out.length > 0 ? Buffer.concat(out) : undefined);
    } catch (err) {
      cb(err as Error);
    }
  }

  private frame(frame: Buffer): Buffer[] {
    const type = frame[3] ?? 0;
    const flags = frame[4] ?? 0;
    const streamId = frame.readUInt32BE(5) & 0x7fffffff;
    let payload = frame.subarray(FRAME_HEADER);
    if (type === TYPE_HEADERS || type === TYPE_PUSH_PROMISE) {
      let pad = 0;
      if (flags & FLAG_PADDED) {
        pad = payload[0] ?? 0;
        payload = payload.subarray(1);
      }
      const prefixLength = (type === TYPE_HEADERS && flags & FLAG_PRIORITY ? 5 : 0) + (type === TYPE_PUSH_PROMISE ? 4 : 0);
      const prefix = payload.subarray(0, prefixLength);
      payload = payload.subarray(prefixLength, payload.length - pad);
      this.block = { type, flags, streamId, prefix, fragments: [payload], raw: [frame] };
    } else if (type === TYPE_CONTINUATION && this.block) {
      this.block.fragments.push(payload);
      this.block.raw.push(frame);
      this.block.flags |= flags & FLAG_END_HEADERS;
    } else {
      return [frame];
    }
    const block = this.block;
    if (!(block.flags & FLAG_END_HEADERS)) return [];
    this.block = undefined;
    const { literals, replaced } = this.rewriteFields(Buffer.concat(block.fragments));
    if (!replaced && !this.reencoded) {
      this.passthrough = true;
      return block.raw;
    }
    this.reencoded = true;
    return this.encodeFrames(block, literals);
  }

  /** Decodes a header block into literals without indexing, with a bad `:authority` replaced. */
  private rewriteFields(encoded: Buffer): { literals: Buffer; replaced: boolean } {
    let failure: Error | undefined;
    const onError = (err: Error): void => {
      failure = err;
    };
    this.decoder.once('error', onError);
    this.decoder.write(encoded);
    this.decoder.execute();
    this.decoder.off('error', onError);
    const fields: HeaderField[] = [];
    for (let f = this.decoder.read(); f !== null; f = this.decoder.read()) fields.push(f);
    if (failure) throw failure;
    const out: Buffer[] = [];
    let replaced = false;
    for (const { name, value, neverIndex } of fields) {
      let v = value;
      if (name === ':authority' && !AUTHORITY_OK.test(value)) {
        v = 'localhost';
        replaced = true;
        this.rewrites++;
      }
      // 0x00: literal without indexing, new name; 0x10: the never-indexed form, kept as sent.
      out.push(Buffer.from([neverIndex ? 0x10 : 0x00]), hpackString(name), hpackString(v));
    }
    return { literals: Buffer.concat(out), replaced };
  }

  /** Splits a header block into HEADERS/PUSH_PROMISE + CONTINUATION frames of at most MAX_FRAME. */
  private encodeFrames(block: HeaderBlock, encoded: Buffer): Buffer[] {
    const frames: Buffer[] = [];
    let rest = encoded;
    let first = true;
    do {
      const room = MAX_FRAME - (first ? block.prefix.length : 0);
      const part = rest.subarray(0, room);
      rest = rest.subarray(part.length);
      let flags = rest.length === 0 ? FLAG_END_HEADERS : 0;
      if (first) flags |= block.flags & (FLAG_END_STREAM | FLAG_PRIORITY);
      const body = first ? Buffer.concat([block.prefix, part]) : part;
      const header = Buffer.alloc(FRAME_HEADER);
      header.writeUIntBE(body.length, 0, 3);
      header[3] = first ? block.type : TYPE_CONTINUATION;
      header[4] = flags;
      header.writeUInt32BE(block.streamId, 5);
      frames.push(header, body);
      first = false;
    } while (rest.length > 0);
    return frames;
  }
}
