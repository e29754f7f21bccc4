// Protobuf wire encoding and decoding of berth's gRPC messages, driven by the descriptor that
// hack/gen-descriptor.ts compiles from proto/ ahead of time (src/cri/descriptor.json). It replaces
// @grpc/proto-loader at run time: that parses the .proto files at every start and protobufjs
// generates its codecs with `new Function`, which pages in V8's parser and optimizing compilers;
// measured on berthd at idle, ~12 MB of RSS. Objects have the shapes proto-loader gives with
// berth's options (the generated types in src/cri/gen/ describe them): proto field names, 64-bit
// integers as numbers, enums as their names, every field present (scalars at their zero value,
// messages null, repeated fields [], maps {}).

/** The scalar types the codec handles; hack/gen-descriptor.ts refuses a proto using any other. */
export const CODEC_SCALARS = ['double', 'int32', 'uint32', 'int64', 'uint64', 'bool', 'string', 'bytes'] as const;

export interface FieldDesc {
  name: string;
  no: number;
  /** A scalar from CODEC_SCALARS, or the full name of a message or enum. For a map: the value type. */
  type: string;
  repeated?: true;
  /** Set for a map field: the key's scalar type. */
  key?: string;
}

export interface MethodDesc {
  name: string;
  request: string;
  response: string;
  /** Server streaming. */
  stream?: true;
}

export interface Descriptor {
  $comment: string;
  messages: Record<string, FieldDesc[]>;
  enums: Record<string, Record<string, number>>;
  services: Record<string, MethodDesc[]>;
}

type Obj = Record<string, unknown>;

const Kind = { Double: 0, Int32: 1, Uint32: 2, Int64: 3, Uint64: 4, Bool: 5, String: 6, Bytes: 7, Enum: 8, Message: 9 } as const;
type Kind = (typeof Kind)[keyof typeof Kind];

const KINDS: Record<string, Kind> = { double: Kind.Double, int32: Kind.Int32, uint32: Kind.Uint32, int64: Kind.Int64, uint64: Kind.Uint64, bool: Kind.Bool, string: Kind.String, bytes: Kind.Bytes };

/** Wire types: varint, 64-bit, length-delimited, 32-bit. */
const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

interface Field {
  name: string;
  no: number;
  kind: Kind;
  repeated: boolean;
  /** For a map: the key (field 1 of each entry); the field itself describes the value (field 2). */
  key: Field | undefined;
  /** Resolved on first use, so message types may refer to each other. */
  message: MessageType | undefined;
  messageName: string;
  enumByName: Record<string, number> | undefined;
  enumByNo: Map<number, string> | undefined;
}

const wireTypeOf = (k: Kind): number => (k === Kind.Double ? I64 : k === Kind.String || k === Kind.Bytes || k === Kind.Message ? LEN : VARINT);
const packable = (k: Kind): boolean => k !== Kind.String && k !== Kind.Bytes && k !== Kind.Message;

function zeroOf(f: Field): unknown {
  switch (f.kind) {
    case Kind.Bool:
      return false;
    case Kind.String:
      return '';
    case Kind.Bytes:
      return Buffer.alloc(0);
    case Kind.Enum:
      return f.enumByNo?.get(0) ?? 0;
    case Kind.Message:
      return null;
    default:
      return 0;
  }
}

class Writer {
  buf = Buffer.allocUnsafe(256);
  pos = 0;

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** A non-negative integer up to 2^53. */
  varint(v: number): void {
    this.ensure(10);
    while (v >= 0x80) {
      this.buf[this.pos++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.pos++] = v;
  }

  /** Any integer as the 64-bit two's complement varint int32 and int64 use for negatives. */
  signedVarint(v: number): void {
    if (v >= 0) return this.varint(v);
    let u = BigInt.asUintN(64, BigInt(v));
    this.ensure(10);
    while (u >= 0x80n) {
      this.buf[this.pos++] = Number(u & 0x7fn) | 0x80;
      u >>= 7n;
    }
    this.buf[this.pos++] = Number(u);
  }

  tag(no: number, wire: number): void {
    this.varint(no * 8 + wire);
  }

  bytes(b: Uint8Array): void {
    this.varint(b.length);
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  string(s: string): void {
    const n = Buffer.byteLength(s);
    this.varint(n);
    this.ensure(n);
    this.pos += this.buf.write(s, this.pos, n, 'utf8');
  }

  double(v: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }

  /** Writes a length-delimited body produced by `body`, prefixing its length once known. */
  delimited(body: () => void): void {
    this.ensure(1);
    const start = this.pos++;
    body();
    const len = this.pos - start - 1;
    if (len < 0x80) {
      this.buf[start] = len;
      return;
    }
    let prefix = 1;
    for (let v = len; v >= 0x80; v = Math.floor(v / 0x80)) prefix++;
    this.ensure(prefix - 1);
    this.buf.copy(this.buf, start + prefix, start + 1, this.pos);
    const end = this.pos + prefix - 1;
    this.pos = start;
    this.varint(len);
    this.pos = end;
  }
}

class Reader {
  pos = 0;
  readonly buf: Buffer;

  constructor(buf: Buffer) {
    this.buf = buf;
  }

  private byte(end: number): number {
    if (this.pos >= end) throw new RangeError('truncated protobuf message');
    return this.buf[this.pos++] as number;
  }

  /** A varint as its low and high 32 bits. */
  varint64(end: number): [number, number] {
    let lo = 0;
    let b = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      b = this.byte(end);
      lo |= (b & 0x7f) << shift;
      if (b < 0x80) return [lo >>> 0, 0];
    }
    b = this.byte(end);
    lo |= (b & 0x7f) << 28;
    let hi = (b & 0x7f) >> 4;
    if (b < 0x80) return [lo >>> 0, hi];
    for (let shift = 3; shift < 32; shift += 7) {
      b = this.byte(end);
      hi |= (b & 0x7f) << shift;
      if (b < 0x80) return [lo >>> 0, hi >>> 0];
    }
    throw new RangeError('invalid varint in protobuf message');
  }

  /** A varint that fits 32 bits (tags, lengths, enums); the high bits of a longer one are dropped. */
  uint32(end: number): number {
    const b = this.byte(end);
    if (b < 0x80) return b;
    this.pos--;
    return this.varint64(end)[0];
  }

  length(end: number): number {
    const n = this.uint32(end);
    if (this.pos + n > end) throw new RangeError('truncated protobuf message');
    return n;
  }

  /** Reads a length prefix; returns where the delimited part ends. */
  delimitedEnd(end: number): number {
    const n = this.length(end);
    return this.pos + n;
  }

  skip(wire: number, end: number): void {
    if (wire === VARINT) this.varint64(end);
    else if (wire === I64) this.pos += 8;
    else if (wire === LEN) {
      const n = this.length(end);
      this.pos += n;
    }
    else if (wire === I32) this.pos += 4;
    else throw new RangeError(`unsupported protobuf wire type ${wire}`);
    if (this.pos > end) throw new RangeError('truncated protobuf message');
  }
}

/** One message type: encodes plain objects to its wire form and decodes them back. */
export class MessageType {
  readonly name: string;
  private readonly codec: Codec;
  private readonly desc: FieldDesc[];
  private fieldList: Field[] | undefined;
  private byNo: Map<number, Field> | undefined;

  constructor(codec: Codec, name: string, desc: FieldDesc[]) {
    this.codec = codec;
    this.name = name;
    this.desc = desc;
  }

  private get fields(): Field[] {
    if (!this.fieldList) {
      this.fieldList = this.desc.map((d) => this.codec.field(this.name, d));
      this.byNo = new Map(this.fieldList.map((f) => [f.no, f]));
    }
    return this.fieldList;
  }

  encode(obj: object): Buffer {
    const w = new Writer();
    this.write(w, obj as Obj);
    return Buffer.from(w.buf.subarray(0, w.pos));
  }

  decode(buf: Buffer): Obj {
    const r = new Reader(buf);
    return this.read(r, buf.length);
  }

  private fail(f: Field, what: string): never {
    throw new TypeError(`${this.name}.${f.name}: ${what}`);
  }

  write(w: Writer, obj: Obj): void {
    if (obj === null || typeof obj !== 'object') throw new TypeError(`${this.name}: object expected`);
    for (const f of this.fields) {
      const v = obj[f.name];
      if (v === undefined || v === null) continue;
      if (f.key !== undefined) {
        if (typeof v !== 'object') this.fail(f, 'object expected');
        for (const [k, item] of Object.entries(v as Obj)) {
          if (item === undefined || item === null) continue;
          w.tag(f.no, LEN);
          w.delimited(() => {
            const key = f.key as Field;
            this.writeValue(w, key, 1, key.kind === Kind.String ? k : Number(k), true);
            this.writeValue(w, f, 2, item, true);
          });
        }
      } else if (f.repeated) {
        if (!Array.isArray(v)) this.fail(f, 'array expected');
        if (v.length === 0) continue;
        if (packable(f.kind)) {
          w.tag(f.no, LEN);
          w.delimited(() => {
            for (const item of v) this.writeScalar(w, f, item);
          });
        } else {
          for (const item of v) this.writeValue(w, f, f.no, item, true);
        }
      } else {
        this.writeValue(w, f, f.no, v, false);
      }
    }
  }

  /** One value with its tag; a scalar at its zero value is left out unless `always`. */
  private writeValue(w: Writer, f: Field, no: number, v: unknown, always: boolean): void {
    if (f.kind === Kind.Message) {
      if (typeof v !== 'object' || v === null) this.fail(f, 'object expected');
      const type = this.codec.resolve(f);
      w.tag(no, LEN);
      w.delimited(() => type.write(w, v as Obj));
      return;
    }
    if (f.kind === Kind.String) {
      const s = typeof v === 'string' ? v : String(v);
      if (s === '' && !always) return;
      w.tag(no, LEN);
      w.string(s);
      return;
    }
    if (f.kind === Kind.Bytes) {
      const b = typeof v === 'string' ? Buffer.from(v, 'base64') : v instanceof Uint8Array ? v : this.fail(f, 'buffer expected');
      if (b.length === 0 && !always) return;
      w.tag(no, LEN);
      w.bytes(b);
      return;
    }
    const start = w.pos;
    w.tag(no, wireTypeOf(f.kind));
    if (!this.writeScalar(w, f, v) && !always) w.pos = start;
  }

  /** A numeric, bool or enum value without a tag; returns false when it was the zero value. */
  private writeScalar(w: Writer, f: Field, v: unknown): boolean {
    switch (f.kind) {
      case Kind.Double: {
        const n = Number(v);
        w.double(n);
        return n !== 0 || Object.is(n, -0);
      }
      case Kind.Bool:
        w.varint(v ? 1 : 0);
        return Boolean(v);
      case Kind.Enum: {
        const n = typeof v === 'number' ? v : f.enumByName?.[v as string];
        if (n === undefined || !Number.isInteger(n)) this.fail(f, `${JSON.stringify(v)} is not a value of the enum`);
        w.signedVarint(n | 0);
        return n !== 0;
      }
      case Kind.Int32: {
        const n = Number(v) | 0;
        w.signedVarint(n);
        return n !== 0;
      }
      case Kind.Uint32: {
        const n = Number(v) >>> 0;
        w.varint(n);
        return n !== 0;
      }
      case Kind.Int64:
      case Kind.Uint64: {
        const n = Math.trunc(typeof v === 'bigint' ? Number(v) : Number(v));
        if (!Number.isFinite(n)) this.fail(f, `${String(v)} is not an integer`);
        if (f.kind === Kind.Uint64 && n < 0) this.fail(f, `${n} is negative`);
        w.signedVarint(n);
        return n !== 0;
      }
      default:
        return this.fail(f, 'not a scalar');
    }
  }

  read(r: Reader, end: number): Obj {
    const fields = this.fields;
    const obj: Obj = {};
    for (const f of fields) obj[f.name] = f.key !== undefined ? {} : f.repeated ? [] : zeroOf(f);
    const byNo = this.byNo as Map<number, Field>;
    while (r.pos < end) {
      const tag = r.uint32(end);
      const wire = tag & 7;
      const f = byNo.get(tag >>> 3);
      if (!f) {
        r.skip(wire, end);
        continue;
      }
      if (f.key !== undefined) {
        if (wire !== LEN) throw new RangeError(`${this.name}.${f.name}: wire type ${wire} for a map entry`);
        const stop = r.delimitedEnd(end);
        const keyField = f.key;
        let k: unknown = zeroOf(keyField);
        let v: unknown = f.kind === Kind.Message ? this.codec.resolve(f).read(r, r.pos) : zeroOf(f);
        while (r.pos < stop) {
          const t = r.uint32(stop);
          if (t >>> 3 === 1) k = this.readValue(r, keyField, t & 7, stop);
          else if (t >>> 3 === 2) v = this.readValue(r, f, t & 7, stop);
          else r.skip(t & 7, stop);
        }
        (obj[f.name] as Obj)[String(k)] = v;
      } else if (f.repeated) {
        const list = obj[f.name] as unknown[];
        if (wire === LEN && packable(f.kind)) {
          const stop = r.delimitedEnd(end);
          while (r.pos < stop) list.push(this.readScalar(r, f, stop));
        } else {
          list.push(this.readValue(r, f, wire, end));
        }
      } else {
        obj[f.name] = this.readValue(r, f, wire, end);
      }
    }
    if (r.pos !== end) throw new RangeError('truncated protobuf message');
    return obj;
  }

  private readValue(r: Reader, f: Field, wire: number, end: number): unknown {
    if (wire !== wireTypeOf(f.kind)) throw new RangeError(`${this.name}.${f.name}: wire type ${wire}, expected ${wireTypeOf(f.kind)}`);
    if (f.kind === Kind.Message) {
      const stop = r.delimitedEnd(end);
      return this.codec.resolve(f).read(r, stop);
    }
    if (f.kind === Kind.String || f.kind === Kind.Bytes) {
      const n = r.length(end);
      const start = r.pos;
      r.pos += n;
      // Bytes are copied: a view would keep the whole received frame alive.
      return f.kind === Kind.String ? r.buf.toString('utf8', start, r.pos) : Buffer.from(r.buf.subarray(start, r.pos));
    }
    return this.readScalar(r, f, end);
  }

  private readScalar(r: Reader, f: Field, end: number): unknown {
    if (f.kind === Kind.Double) {
      if (r.pos + 8 > end) throw new RangeError('truncated protobuf message');
      const v = r.buf.readDoubleLE(r.pos);
      r.pos += 8;
      return v;
    }
    const [lo, hi] = r.varint64(end);
    switch (f.kind) {
      case Kind.Bool:
        return lo !== 0 || hi !== 0;
      case Kind.Int32:
        return lo | 0;
      case Kind.Uint32:
        return lo;
      case Kind.Int64:
        return (hi | 0) * 0x100000000 + lo;
      case Kind.Uint64:
        return hi * 0x100000000 + lo;
      case Kind.Enum:
        return f.enumByNo?.get(lo | 0) ?? lo | 0;
      default:
        return this.fail(f, 'not a scalar');
    }
  }
}

/** Every message type of a descriptor, made on first use. */
export class Codec {
  private readonly desc: Descriptor;
  private readonly types = new Map<string, MessageType>();
  private readonly enums = new Map<string, { byName: Record<string, number>; byNo: Map<number, string> }>();

  constructor(desc: Descriptor) {
    this.desc = desc;
  }

  type(name: string): MessageType {
    let t = this.types.get(name);
    if (!t) {
      const fields = this.desc.messages[name];
      if (!fields) throw new Error(`no message type ${name} in the descriptor`);
      t = new MessageType(this, name, fields);
      this.types.set(name, t);
    }
    return t;
  }

  /** @internal MessageType's view of one field. */
  field(owner: string, d: FieldDesc): Field {
    const scalar = KINDS[d.type];
    const values = scalar === undefined ? this.desc.enums[d.type] : undefined;
    if (scalar === undefined && !values && !this.desc.messages[d.type]) throw new Error(`${owner}.${d.name}: unknown type ${d.type}`);
    let en: { byName: Record<string, number>; byNo: Map<number, string> } | undefined;
    if (values) {
      en = this.enums.get(d.type);
      if (!en) {
        const byNo = new Map<number, string>();
        // With aliases, the first name of a number is the one decoding gives.
        for (const [k, n] of Object.entries(values)) if (!byNo.has(n)) byNo.set(n, k);
        en = { byName: values, byNo };
        this.enums.set(d.type, en);
      }
    }
    const keyKind = d.key === undefined ? undefined : KINDS[d.key];
    if (d.key !== undefined && keyKind === undefined) throw new Error(`${owner}.${d.name}: unknown map key type ${d.key}`);
    const key: Field | undefined =
      keyKind === undefined ? undefined : { name: 'key', no: 1, kind: keyKind, repeated: false, key: undefined, message: undefined, messageName: '', enumByName: undefined, enumByNo: undefined };
    return {
      name: d.name,
      no: d.no,
      kind: scalar ?? (values ? Kind.Enum : Kind.Message),
      repeated: d.repeated === true,
      key,
      message: undefined,
      messageName: d.type,
      enumByName: en?.byName,
      enumByNo: en?.byNo,
    };
  }

  /** @internal The message type of a message-typed field. */
  resolve(f: Field): MessageType {
    f.message ??= this.type(f.messageName);
    return f.message;
  }
}
