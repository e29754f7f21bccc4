// SPDY/3.1 frames on the wire: the 8-byte frame headers, each control frame's fields, and the
// (uncompressed) name/value header block. Pure byte work; compression and stream state live in
// header-compression.ts and session.ts.

export const SPDY_VERSION = 3;

/** Control frame type codes (SPDY/3.1 section 2.6). */
export const FrameType = {
  SYN_STREAM: 1,
  SYN_REPLY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PING: 6,
  GOAWAY: 7,
  HEADERS: 8,
  WINDOW_UPDATE: 9,
} as const;

export const FLAG_FIN = 0x01;
export const FLAG_UNIDIRECTIONAL = 0x02;
export const FLAG_SETTINGS_CLEAR = 0x01;

/** RST_STREAM status codes. */
export const RstStatus = {
  PROTOCOL_ERROR: 1,
  INVALID_STREAM: 2,
  REFUSED_STREAM: 3,
  UNSUPPORTED_VERSION: 4,
  CANCEL: 5,
  INTERNAL_ERROR: 6,
  FLOW_CONTROL_ERROR: 7,
  STREAM_IN_USE: 8,
  STREAM_ALREADY_CLOSED: 9,
  FRAME_TOO_LARGE: 11,
} as const;

export const GoAwayStatus = { OK: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2 } as const;

export const SETTINGS_INITIAL_WINDOW_SIZE = 7;
/** Both the stream and the session window start here (SPDY/3.1 sections 2.6.8, 2.6.9). */
export const DEFAULT_WINDOW = 64 * 1024;
/** The 24-bit length field's limit. */
export const MAX_FRAME_PAYLOAD = 0xffffff;

export type Frame =
  | { type: 'data'; streamId: number; fin: boolean; data: Buffer }
  | { type: 'syn_stream'; streamId: number; associatedId: number; priority: number; fin: boolean; unidirectional: boolean; block: Buffer }
  | { type: 'syn_reply'; streamId: number; fin: boolean; block: Buffer }
  | { type: 'headers'; streamId: number; fin: boolean; block: Buffer }
  | { type: 'rst_stream'; streamId: number; status: number }
  | { type: 'settings'; clear: boolean; entries: Array<{ flags: number; id: number; value: number }> }
  | { type: 'ping'; id: number }
  | { type: 'goaway'; lastGoodStreamId: number; status: number }
  | { type: 'window_update'; streamId: number; delta: number }
  /** Types SPDY/3.1 dropped or never had (NOOP, CREDENTIAL): the spec says ignore them. */
  | { type: 'ignored'; frameType: number };

/** A broken peer: the session answers with GOAWAY(PROTOCOL_ERROR) and closes. */
export class SpdyProtocolError extends Error {
  override name = 'SpdyProtocolError';
}

const ID_MASK = 0x7fffffff;

function controlHeader(type: number, flags: number, length: number): Buffer {
  if (length > MAX_FRAME_PAYLOAD) throw new RangeError(`SPDY frame payload of ${length} bytes exceeds ${MAX_FRAME_PAYLOAD}`);
  const h = Buffer.allocUnsafe(8);
  h.writeUInt16BE(0x8000 | SPDY_VERSION, 0);
  h.writeUInt16BE(type, 2);
  h.writeUInt32BE(((flags & 0xff) << 24 | length) >>> 0, 4);
  return h;
}

export function encodeData(streamId: number, data: Buffer, fin: boolean): Buffer {
  if (data.length > MAX_FRAME_PAYLOAD) throw new RangeError(`SPDY data frame of ${data.length} bytes exceeds ${MAX_FRAME_PAYLOAD}`);
  const h = Buffer.allocUnsafe(8 + data.length);
  h.writeUInt32BE(streamId & ID_MASK, 0);
  h.writeUInt32BE(((fin ? FLAG_FIN : 0) << 24 | data.length) >>> 0, 4);
  data.copy(h, 8);
  return h;
}

export function encodeSynStream(streamId: number, block: Buffer, opts: { fin?: boolean; unidirectional?: boolean; priority?: number; associatedId?: number } = {}): Buffer {
  const flags = (opts.fin ? FLAG_FIN : 0) | (opts.unidirectional ? FLAG_UNIDIRECTIONAL : 0);
  const body = Buffer.allocUnsafe(10);
  body.writeUInt32BE(streamId & ID_MASK, 0);
  body.writeUInt32BE((opts.associatedId ?? 0) & ID_MASK, 4);
  body[8] = ((opts.priority ?? 0) & 0x7) << 5;
  body[9] = 0; // credential slot, unused since SPDY/3.1
  return Buffer.concat([controlHeader(FrameType.SYN_STREAM, flags, 10 + block.length), body, block]);
}

function streamAndBlock(type: number, streamId: number, block: Buffer, fin: boolean): Buffer {
  const id = Buffer.allocUnsafe(4);
  id.writeUInt32BE(streamId & ID_MASK, 0);
  return Buffer.concat([controlHeader(type, fin ? FLAG_FIN : 0, 4 + block.length), id, block]);
}

export const encodeSynReply = (streamId: number, block: Buffer, fin = false): Buffer => streamAndBlock(FrameType.SYN_REPLY, streamId, block, fin);

function twoWords(type: number, a: number, b: number): Buffer {
  const f = controlHeader(type, 0, 8);
  const body = Buffer.allocUnsafe(8);
  body.writeUInt32BE(a >>> 0, 0);
  body.writeUInt32BE(b >>> 0, 4);
  return Buffer.concat([f, body]);
}

export const encodeRstStream = (streamId: number, status: number): Buffer => twoWords(FrameType.RST_STREAM, streamId & ID_MASK, status);
export const encodeGoAway = (lastGoodStreamId: number, status: number): Buffer => twoWords(FrameType.GOAWAY, lastGoodStreamId & ID_MASK, status);
export const encodeWindowUpdate = (streamId: number, delta: number): Buffer => twoWords(FrameType.WINDOW_UPDATE, streamId & ID_MASK, delta & ID_MASK);

export function encodePing(id: number): Buffer {
  const body = Buffer.allocUnsafe(4);
  body.writeUInt32BE(id >>> 0, 0);
  return Buffer.concat([controlHeader(FrameType.PING, 0, 4), body]);
}

export function encodeSettings(entries: Array<{ id: number; value: number; flags?: number }>, clear = false): Buffer {
  const body = Buffer.allocUnsafe(4 + 8 * entries.length);
  body.writeUInt32BE(entries.length, 0);
  entries.forEach((e, i) => {
    body.writeUInt32BE((((e.flags ?? 0) & 0xff) << 24 | (e.id & 0xffffff)) >>> 0, 4 + 8 * i);
    body.writeUInt32BE(e.value >>> 0, 8 + 8 * i);
  });
  return Buffer.concat([controlHeader(FrameType.SETTINGS, clear ? FLAG_SETTINGS_CLEAR : 0, body.length), body]);
}

/** Header names are lowercase on the wire; several values of one name are joined by NUL. */
export type HeaderMap = Record<string, string>;

export function packHeaderBlock(headers: HeaderMap): Buffer {
  const parts: Buffer[] = [];
  const names = Object.keys(headers);
  const count = Buffer.allocUnsafe(4);
  count.writeUInt32BE(names.length, 0);
  parts.push(count);
  for (const name of names) {
    for (const s of [name.toLowerCase(), headers[name] as string]) {
      const bytes = Buffer.from(s, 'utf8');
      const len = Buffer.allocUnsafe(4);
      len.writeUInt32BE(bytes.length, 0);
      parts.push(len, bytes);
    }
  }
  return Buffer.concat(parts);
}

export function unpackHeaderBlock(block: Buffer): HeaderMap {
  const fail = (why: string): never => {
    throw new SpdyProtocolError(`malformed SPDY header block: ${why}`);
  };
  if (block.length < 4) fail('shorter than its pair count');
  const n = block.readUInt32BE(0);
  let at = 4;
  const take = (): string => {
    if (at + 4 > block.length) fail('length field past the end');
    const len = block.readUInt32BE(at);
    at += 4;
    if (at + len > block.length) fail('string past the end');
    const s = block.toString('utf8', at, at + len);
    at += len;
    return s;
  };
  const headers: HeaderMap = {};
  for (let i = 0; i < n; i++) {
    const name = take().toLowerCase();
    if (name.length === 0) fail('empty header name');
    const value = take();
    headers[name] = name in headers ? `${headers[name]}\0${value}` : value;
  }
  return headers;
}

/**
 * Cuts a byte stream into frames. Feed it socket chunks; it returns every frame completed so far
 * and keeps the remainder. Control frames larger than `maxControl` are refused: header blocks and
 * settings are small, so a huge one is an attack or a bug.
 */
export class FrameParser {
  private buf: Buffer = Buffer.alloc(0);
  private readonly maxControl: number;
  constructor(maxControl = 1 << 20) {
    this.maxControl = maxControl;
  }

  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const frames: Frame[] = [];
    while (this.buf.length >= 8) {
      const word = this.buf.readUInt32BE(4);
      const flags = word >>> 24;
      const length = word & 0xffffff;
      const control = ((this.buf[0] as number) & 0x80) !== 0;
      if (control && length > this.maxControl) throw new SpdyProtocolError(`control frame of ${length} bytes is larger than ${this.maxControl}`);
      if (this.buf.length < 8 + length) break;
      const payload = this.buf.subarray(8, 8 + length);
      const head = this.buf.subarray(0, 8);
      this.buf = this.buf.subarray(8 + length);
      frames.push(control ? parseControl(head, flags, payload) : { type: 'data', streamId: head.readUInt32BE(0) & ID_MASK, fin: (flags & FLAG_FIN) !== 0, data: payload });
    }
    return frames;
  }
}

function parseControl(head: Buffer, flags: number, p: Buffer): Frame {
  const version = head.readUInt16BE(0) & 0x7fff;
  const type = head.readUInt16BE(2);
  if (version !== SPDY_VERSION) throw new SpdyProtocolError(`SPDY version ${version} frame; only version 3 is spoken`);
  const need = (n: number, name: string): void => {
    if (p.length < n) throw new SpdyProtocolError(`${name} frame of ${p.length} bytes is too short`);
  };
  const fin = (flags & FLAG_FIN) !== 0;
  switch (type) {
    case FrameType.SYN_STREAM:
      need(10, 'SYN_STREAM');
      return {
        type: 'syn_stream',
        streamId: p.readUInt32BE(0) & ID_MASK,
        associatedId: p.readUInt32BE(4) & ID_MASK,
        priority: (p[8] as number) >>> 5,
        fin,
        unidirectional: (flags & FLAG_UNIDIRECTIONAL) !== 0,
        block: p.subarray(10),
      };
    case FrameType.SYN_REPLY:
      need(4, 'SYN_REPLY');
      return { type: 'syn_reply', streamId: p.readUInt32BE(0) & ID_MASK, fin, block: p.subarray(4) };
    case FrameType.HEADERS:
      need(4, 'HEADERS');
      return { type: 'headers', streamId: p.readUInt32BE(0) & ID_MASK, fin, block: p.subarray(4) };
    case FrameType.RST_STREAM:
      need(8, 'RST_STREAM');
      return { type: 'rst_stream', streamId: p.readUInt32BE(0) & ID_MASK, status: p.readUInt32BE(4) };
    case FrameType.SETTINGS: {
      need(4, 'SETTINGS');
      const n = p.readUInt32BE(0);
      need(4 + 8 * n, 'SETTINGS');
      const entries = [];
      for (let i = 0; i < n; i++) {
        const w = p.readUInt32BE(4 + 8 * i);
        entries.push({ flags: w >>> 24, id: w & 0xffffff, value: p.readUInt32BE(8 + 8 * i) });
      }
      return { type: 'settings', clear: (flags & FLAG_SETTINGS_CLEAR) !== 0, entries };
    }
    case FrameType.PING:
      need(4, 'PING');
      return { type: 'ping', id: p.readUInt32BE(0) };
    case FrameType.GOAWAY:
      // SPDY/3 added the status word; accept the 4-byte SPDY/2 form too rather than drop the peer.
      need(4, 'GOAWAY');
      return { type: 'goaway', lastGoodStreamId: p.readUInt32BE(0) & ID_MASK, status: p.length >= 8 ? p.readUInt32BE(4) : 0 };
    case FrameType.WINDOW_UPDATE:
      need(8, 'WINDOW_UPDATE');
      return { type: 'window_update', streamId: p.readUInt32BE(0) & ID_MASK, delta: p.readUInt32BE(4) & ID_MASK };
    default:
      return { type: 'ignored', frameType: type };
  }
}
