// Streaming unpack of one uncompressed OCI/Docker layer tar into an overlayfs "upper dir" layout, so
// the directories of successive layers stack as overlay lowerdirs.
//
// Safety model: `dir` starts empty and nothing else writes into it while we run, so an in-memory map
// of every path we created is an exact picture of the tree. Every parent component is checked against
// that map (only directories we made ourselves may be walked through), names are resolved lexically,
// and files are created with O_EXCL|O_NOFOLLOW after unlinking whatever was there. No syscall ever sees
// a `..` component or a layer-controlled symlink in a parent position, so a hostile layer cannot reach
// outside `dir`.
//
// Speed model: small files and metadata use synchronous syscalls (a few µs each; a libuv round trip
// would cost more than the work), large files stream through async writes with one batch in flight.
// The rare entries that need external tools (mknod for devices/fifos, setfattr for xattrs) run
// concurrently with the stream; xattrs are applied in a single `setfattr --restore` at the end, and
// whiteouts after the first are hard links to it.
import { spawn } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  constants as fsc,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  linkSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { BerthError, errorMessage } from '../util/errors.ts';
import { Semaphore } from '../util/semaphore.ts';
import { writeAll, writeAllSync } from '../util/write-all.ts';
import { quoteDump } from './xattr-dump.ts';

export interface UnpackStats {
  /** Non-directory entries materialized: regular files, hardlinks, symlinks, devices, fifos. */
  files: number;
  /** Directories created, including parents the tar did not list (the layer root is not counted). */
  dirs: number;
  /** Regular-file bytes written. */
  bytes: number;
  /** Whiteouts turned into 0/0 character devices (opaque markers not included). */
  whiteouts: number;
  /**
   * Directories made only because an entry below them needed a parent (the tar has no entry of
   * their own). They are 0755 root here; the snapshot store gives them the metadata of the same
   * path in the layers below once those exist (see SnapshotStore.inheritParentDirs).
   */
  implicitDirs?: string[];
}

export interface UnpackOptions {
  /** Abort between entries; the partial tree is left for the caller to remove. */
  signal?: AbortSignal;
}

/** Files up to this size are gathered in memory and written with one synchronous writev. */
const SMALL_FILE_MAX = 512 * 1024;
/** Large files are written in batches of about this many bytes, one batch in flight. */
const WRITE_BATCH = 1024 * 1024;
/** PAX and GNU long-name records beyond this size are treated as hostile. */
const META_RECORD_MAX = 16 * 1024 * 1024;
/** Concurrent mknod children: enough to hide spawn latency, few enough not to swamp a node. */
const SPAWN_CONCURRENCY = 8;
/**
 * Longest stretch of entries written without letting the event loop run. Buffered entries are
 * written back to back in microtasks; a layer of thousands of small files unpacked in the daemon's
 * thread would otherwise hold its event loop for the whole layer, starving the downloads that feed
 * the unpack worker (and every gRPC call) meanwhile.
 */
const YIELD_AFTER_MS = 4;

const BLOCK = 512;
const S_ISGID = 0o2000;
const CREATE_FLAGS = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;
const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';
const OPAQUE_XATTR = 'trusted.overlay.opaque';
const XATTR_PAX_PREFIX = 'SCHILY.xattr.';
const EMPTY = Buffer.alloc(0);

type EntryType = 'file' | 'dir' | 'symlink' | 'link' | 'char' | 'block' | 'fifo';

interface TarEntry {
  type: EntryType;
  name: string;
  linkname: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch; fractional when a PAX record carried sub-second precision. */
  mtime: number;
  atime: number;
  devmajor: number;
  devminor: number;
  xattrs: Map<string, Buffer> | null;
}

function hostile(message: string): BerthError {
  return new BerthError('invalid-argument', `layer rejected: ${message}`);
}

// ───────────────────────────── byte source ─────────────────────────────

/** Pull-based view over a Readable: exact-size reads for headers, zero-copy slices for file data. */
class ByteReader {
  readonly #it: AsyncIterator<unknown>;
  #chunk: Buffer = EMPTY;
  #pos = 0;

  constructor(stream: Readable) {
    this.#it = stream[Symbol.asyncIterator]();
  }

  async #fill(): Promise<boolean> {
    while (this.#pos >= this.#chunk.length) {
      const { value, done } = await this.#it.next();
      if (done === true) return false;
      this.#chunk = Buffer.isBuffer(value) ? value : Buffer.from(value as Uint8Array);
      this.#pos = 0;
    }
    return true;
  }

  /** Exactly `n` bytes, or null at a clean end of stream; throws when the stream ends mid-read. */
  async readExact(n: number): Promise<Buffer | null> {
    if (this.#chunk.length - this.#pos >= n) return this.#take(n);
    const parts: Buffer[] = [];
    let have = 0;
    while (have < n) {
      if (!(await this.#fill())) {
        if (have === 0) return null;
        throw hostile('tar stream ends in the middle of a record');
      }
      const part = this.#take(Math.min(n - have, this.#chunk.length - this.#pos));
      parts.push(part);
      have += part.length;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
  }

  /** Between 1 and `max` bytes; throws at end of stream. */
  async readSome(max: number): Promise<Buffer> {
    if (!(await this.#fill())) throw hostile('tar stream ends in the middle of a file');
    return this.#take(Math.min(max, this.#chunk.length - this.#pos));
  }

  async skip(n: number): Promise<void> {
    while (n > 0) n -= (await this.readSome(n)).length;
  }

  /** Consume the rest so an upstream hash sees every byte (tar trailers are often padded). */
  async drain(): Promise<void> {
    this.#pos = this.#chunk.length;
    while (await this.#fill()) this.#pos = this.#chunk.length;
  }

  /** Stop reading early (on failure): destroys the source stream. */
  async close(): Promise<void> {
    await this.#it.return?.();
  }

  #take(n: number): Buffer {
    const out = this.#chunk.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }
}

// ───────────────────────────── tar format ─────────────────────────────

interface RawHeader {
  typeflag: number;
  name: string;
  linkname: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  devmajor: number;
  devminor: number;
}

/** Octal text (space/NUL padded) or GNU base-256 (high bit set) numeric field. */
function parseNumber(buf: Buffer, start: number, len: number, field: string): number {
  const first = buf[start]!;
  if (first & 0x80) {
    if (first !== 0x80) throw hostile(`negative or malformed ${field} field`);
    let value = 0;
    for (let i = start + 1; i < start + len; i++) value = value * 256 + buf[i]!;
    if (!Number.isSafeInteger(value)) throw hostile(`${field} field out of range`);
    return value;
  }
  let i = start;
  const end = start + len;
  while (i < end && (buf[i] === 0x20 || buf[i] === 0)) i++;
  let value = 0;
  for (; i < end; i++) {
    const c = buf[i]!;
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) throw hostile(`non-octal ${field} field`);
    value = value * 8 + (c - 0x30);
  }
  return value;
}

/** Names are bytes on Linux; refuse ones that would not survive a round trip through a JS string. */
function utf8Strict(bytes: Buffer): string {
  const text = bytes.toString('utf8');
  if (text.includes('\uFFFD') && !Buffer.from(text).equals(bytes)) {
    throw hostile(`file name ${JSON.stringify(text)} is not valid UTF-8`);
  }
  return text;
}

/** Text field up to the first NUL. */
function decodeText(buf: Buffer, start: number, end: number): string {
  let stop = buf.indexOf(0, start);
  if (stop < 0 || stop > end) stop = end;
  return utf8Strict(buf.subarray(start, stop));
}

function paxText(pax: Map<string, Buffer> | null, key: string): string | undefined {
  const raw = pax?.get(key);
  return raw === undefined ? undefined : utf8Strict(raw);
}

function checksumOk(block: Buffer): boolean {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  const stored = parseNumber(block, 148, 8, 'checksum');
  return stored === unsigned || stored === signed;
}

function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

function parseHeader(block: Buffer): RawHeader {
  if (!checksumOk(block)) throw hostile('bad tar header checksum (is the layer still compressed?)');
  let name = decodeText(block, 0, 100);
  // POSIX ustar splits long names into prefix + name; GNU tar uses those bytes for other fields.
  const posix = block.toString('latin1', 257, 263) === 'ustar\0';
  if (posix && block[345] !== 0) name = `${decodeText(block, 345, 500)}/${name}`;
  return {
    typeflag: block[156]!,
    name,
    linkname: decodeText(block, 157, 257),
    mode: parseNumber(block, 100, 8, 'mode'),
    uid: parseNumber(block, 108, 8, 'uid'),
    gid: parseNumber(block, 116, 8, 'gid'),
    size: parseNumber(block, 124, 12, 'size'),
    mtime: parseNumber(block, 136, 12, 'mtime'),
    devmajor: parseNumber(block, 329, 8, 'devmajor'),
    devminor: parseNumber(block, 337, 8, 'devminor'),
  };
}

/** PAX records `LEN KEY=VALUE\n`; values stay bytes because xattr values are binary. */
function parsePax(buf: Buffer): Map<string, Buffer> {
  const records = new Map<string, Buffer>();
  let pos = 0;
  while (pos < buf.length) {
    if (buf[pos] === 0) break; // NUL padding after the last record
    const space = buf.indexOf(0x20, pos);
    const len = space < 0 ? NaN : Number(buf.toString('latin1', pos, space));
    if (!Number.isInteger(len) || len <= space - pos || pos + len > buf.length || buf[pos + len - 1] !== 0x0a) {
      throw hostile('malformed PAX extended header');
    }
    const eq = buf.indexOf(0x3d, space + 1);
    if (eq < 0 || eq >= pos + len) throw hostile('malformed PAX record (no "=")');
    records.set(buf.toString('utf8', space + 1, eq), buf.subarray(eq + 1, pos + len - 1));
    pos += len;
  }
  return records;
}

function entryType(typeflag: number, name: string): EntryType | null {
  switch (typeflag) {
    case 0: // NUL: pre-POSIX regular file
    case 0x30:
    case 0x37: // contiguous file
      return name.endsWith('/') ? 'dir' : 'file';
    case 0x31: return 'link';
    case 0x32: return 'symlink';
    case 0x33: return 'char';
    case 0x34: return 'block';
    case 0x35: return 'dir';
    case 0x36: return 'fifo';
    default: return null;
  }
}

function paxNumber(pax: Map<string, Buffer> | null, key: string, fallback: number): number {
  const raw = pax?.get(key);
  if (raw === undefined) return fallback;
  const value = Number(raw.toString('latin1'));
  return Number.isFinite(value) ? value : fallback;
}

function ownerId(id: number, name: string): number {
  if (!Number.isInteger(id) || id < 0 || id > 0xfffffffe) throw hostile(`entry ${JSON.stringify(name)} has an invalid uid/gid ${id}`);
  return id;
}

function paxXattrs(pax: Map<string, Buffer> | null): Map<string, Buffer> | null {
  if (pax === null) return null;
  let out: Map<string, Buffer> | null = null;
  for (const [key, value] of pax) {
    if (!key.startsWith(XATTR_PAX_PREFIX)) continue;
    const name = key.slice(XATTR_PAX_PREFIX.length);
    // Overlay's own attributes (opaque, redirect, metacopy) are ours to set from whiteout markers;
    // letting a layer smuggle them in would let it reshape the merged view.
    if (name.startsWith('trusted.overlay.') || name === '') continue;
    (out ??= new Map()).set(name, value);
  }
  return out;
}

/** Reads entries one at a time; the caller reads an entry's data before asking for the next. */
class TarParser {
  readonly #reader: ByteReader;
  #dataLeft = 0;
  #padding = 0;

  constructor(reader: ByteReader) {
    this.#reader = reader;
  }

  async next(): Promise<TarEntry | null> {
    let pax: Map<string, Buffer> | null = null;
    let longName: string | null = null;
    let longLink: string | null = null;
    for (;;) {
      await this.#skipRest();
      const block = await this.#reader.readExact(BLOCK);
      if (block === null || isZeroBlock(block)) return null;
      const raw = parseHeader(block);
      this.#dataLeft = raw.size;
      this.#padding = (BLOCK - (raw.size % BLOCK)) % BLOCK;
      switch (raw.typeflag) {
        case 0x78: // 'x': PAX header for the next entry
          pax = parsePax(await this.#readMeta(raw.size));
          continue;
        case 0x67: // 'g': PAX global header; ignored, as containerd does
          continue;
        case 0x4c: // 'L': GNU long name
          longName = decodeText(await this.#readMeta(raw.size), 0, raw.size);
          continue;
        case 0x4b: // 'K': GNU long link name
          longLink = decodeText(await this.#readMeta(raw.size), 0, raw.size);
          continue;
      }
      return this.#entry(raw, pax, longName, longLink);
    }
  }

  /** Next slice of the current entry's data (at most `max` bytes). */
  async read(max: number): Promise<Buffer> {
    const chunk = await this.#reader.readSome(Math.min(max, this.#dataLeft));
    this.#dataLeft -= chunk.length;
    return chunk;
  }

  get dataLeft(): number {
    return this.#dataLeft;
  }

  #entry(raw: RawHeader, pax: Map<string, Buffer> | null, longName: string | null, longLink: string | null): TarEntry {
    const paxPath = paxText(pax, 'path');
    const name = paxPath ?? longName ?? raw.name;
    const type = entryType(raw.typeflag, name);
    if (type === null) {
      throw hostile(`entry ${JSON.stringify(name)} has unsupported tar type ${JSON.stringify(String.fromCharCode(raw.typeflag))}`);
    }
    if (pax?.has('GNU.sparse.major') || pax?.has('GNU.sparse.size')) {
      throw hostile(`entry ${JSON.stringify(name)} is a GNU sparse file, which is not supported`);
    }
    const size = paxNumber(pax, 'size', raw.size);
    if (!Number.isSafeInteger(size) || size < 0) throw hostile(`entry ${JSON.stringify(name)} has an invalid size`);
    this.#dataLeft = size;
    this.#padding = (BLOCK - (size % BLOCK)) % BLOCK;
    const mtime = paxNumber(pax, 'mtime', raw.mtime);
    return {
      type,
      name,
      linkname: paxText(pax, 'linkpath') ?? longLink ?? raw.linkname,
      size,
      mode: raw.mode & 0o7777,
      uid: ownerId(paxNumber(pax, 'uid', raw.uid), name),
      gid: ownerId(paxNumber(pax, 'gid', raw.gid), name),
      mtime,
      atime: paxNumber(pax, 'atime', mtime),
      devmajor: raw.devmajor,
      devminor: raw.devminor,
      xattrs: paxXattrs(pax),
    };
  }

  async #readMeta(size: number): Promise<Buffer> {
    if (size > META_RECORD_MAX) throw hostile(`tar metadata record of ${size} bytes is too large`);
    const buf = (await this.#reader.readExact(size)) ?? EMPTY;
    if (buf.length !== size) throw hostile('tar stream ends inside a metadata record');
    this.#dataLeft = 0;
    return buf;
  }

  async #skipRest(): Promise<void> {
    const n = this.#dataLeft + this.#padding;
    this.#dataLeft = 0;
    this.#padding = 0;
    if (n > 0) await this.#reader.skip(n);
  }
}

// ───────────────────────────── paths ─────────────────────────────

/** Lexically cleaned relative path ('' is the layer root); throws if it would climb above the root. */
function cleanPath(name: string, what: string): string {
  if (name.includes('\0')) throw hostile(`${what} ${JSON.stringify(name)} contains a NUL byte`);
  const out: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length === 0) throw hostile(`${what} ${JSON.stringify(name)} escapes the layer root`);
      out.pop();
      continue;
    }
    out.push(part);
  }
  return out.join('/');
}

function parentOf(rel: string): string {
  const slash = rel.lastIndexOf('/');
  return slash < 0 ? '' : rel.slice(0, slash);
}

function baseOf(rel: string): string {
  return rel.slice(rel.lastIndexOf('/') + 1);
}


/** The process umask, which open/mkdir apply; knowing it lets us skip chmod when it changes nothing. */
function currentUmask(): number {
  try {
    const match = /^Umask:\s*([0-7]+)$/m.exec(readFileSync('/proc/self/status', 'latin1'));
    if (match?.[1] !== undefined) return parseInt(match[1], 8);
  } catch {
    // fall through: assume the worst, which only costs a chmod per file
  }
  return 0o777;
}

// ───────────────────────────── external tools ─────────────────────────────

function runTool(cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      if (stderr.length < 64 * 1024) stderr += d;
    });
    child.stdin.on('error', () => {}); // EPIPE if the tool exits early; the exit code tells the story
    child.stdin.end(input ?? '');
    child.once('error', (err) => reject(new BerthError('internal', `cannot run ${cmd}: ${errorMessage(err)}`, { cause: err })));
    child.once('close', (code) => {
      if (code === 0) resolve(stderr);
      else reject(Object.assign(new BerthError('internal', `${cmd} failed (exit ${code}): ${stderr.trim()}`), { stderr }));
    });
  });
}

// ───────────────────────────── writing ─────────────────────────────

interface DirMeta {
  mode: number;
  uid: number;
  gid: number;
  atime: number;
  mtime: number;
}

interface Node {
  kind: 'dir' | 'file' | 'symlink' | 'special';
  /** Metadata from the directory's own entry, applied at the end (children change mtimes). */
  meta?: DirMeta;
  opaque?: boolean;
  /** Spawned work (mknod + metadata) still creating this node. */
  pending?: Promise<void>;
  /** Shares its inode with another path; its pending xattrs must not be dropped on unlink. */
  linked?: boolean;
  /** A directory made as a missing parent, with no entry of its own (so far). */
  implicit?: boolean;
}

class Unpacker {
  readonly #root: string;
  readonly #nodes = new Map<string, Node>();
  readonly #xattrs = new Map<string, Map<string, Buffer>>();
  readonly #pending = new Set<Promise<void>>();
  readonly #spawns = new Semaphore(SPAWN_CONCURRENCY);
  readonly #stop = new AbortController();
  readonly #umask = currentUmask();
  readonly #uid = process.geteuid?.() ?? 0;
  readonly #gid = process.getegid?.() ?? 0;
  readonly stats: UnpackStats = { files: 0, dirs: 0, bytes: 0, whiteouts: 0 };
  /**
   * The first whiteout, made by mknod; later ones hard-link to it, which costs a syscall instead of a
   * process. Overlayfs only looks at the type and device number (it shares whiteout inodes itself).
   */
  #whiteoutModel: { rel: string; node: Node } | null = null;

  constructor(root: string) {
    this.#root = resolve(root);
    this.#nodes.set('', { kind: 'dir' });
  }

  async run(parser: TarParser, signal: AbortSignal | undefined): Promise<void> {
    try {
      let slice = performance.now();
      for (let entry = await parser.next(); entry !== null; entry = await parser.next()) {
        signal?.throwIfAborted();
        await this.#entry(entry, parser);
        if (performance.now() - slice >= YIELD_AFTER_MS) {
          await new Promise(setImmediate);
          slice = performance.now();
        }
      }
      await this.#finish();
    } catch (err) {
      // Children not started yet never will be: the layer has failed.
      this.#stop.abort(err);
      throw err;
    } finally {
      // Never return while children still touch the tree; the caller may be about to delete it.
      await Promise.allSettled(this.#pending);
    }
  }

  /** New inodes belong to our euid/egid (the root dir has no setgid bit, see prepareRoot). */
  #needsChown(owner: { uid: number; gid: number }): boolean {
    return owner.uid !== this.#uid || owner.gid !== this.#gid;
  }

  #abs(rel: string): string {
    return rel === '' ? this.#root : `${this.#root}/${rel}`;
  }

  async #entry(e: TarEntry, parser: TarParser): Promise<void> {
    const rel = cleanPath(e.name, 'entry');
    const base = baseOf(rel);
    if (base.startsWith(WHITEOUT_PREFIX)) return this.#whiteout(rel, base);
    if (rel === '' && e.type !== 'dir') throw hostile(`entry ${JSON.stringify(e.name)} would replace the layer root`);
    switch (e.type) {
      case 'dir': return this.#dir(rel, e);
      case 'file': return this.#file(rel, e, parser);
      case 'symlink': return this.#symlink(rel, e);
      case 'link': return this.#hardlink(rel, e);
      default: return this.#special(rel, e);
    }
  }

  // ── parents and replacement ──

  /** Make sure every ancestor of `rel` is a directory we created, creating missing ones. */
  #ensureParents(rel: string): void {
    const parent = parentOf(rel);
    if (this.#nodes.get(parent)?.kind === 'dir') return;
    const parts = rel.split('/');
    let prefix = '';
    for (let i = 0; i < parts.length - 1; i++) {
      prefix = prefix === '' ? parts[i]! : `${prefix}/${parts[i]!}`;
      const node = this.#nodes.get(prefix);
      if (node === undefined) {
        mkdirSync(this.#abs(prefix), 0o755);
        this.#nodes.set(prefix, { kind: 'dir', implicit: true });
        this.stats.dirs++;
      } else if (node.kind !== 'dir') {
        const why = node.kind === 'symlink' ? 'is a symlink' : 'is not a directory';
        throw hostile(`entry ${JSON.stringify(rel)}: parent ${JSON.stringify(prefix)} ${why}`);
      }
    }
  }

  /**
   * Clear the way for a new node at `rel`. Returns true when an existing directory should be kept
   * (a directory entry over a directory only updates metadata).
   */
  async #prepare(rel: string, newKind: Node['kind']): Promise<boolean> {
    this.#ensureParents(rel);
    const existing = this.#nodes.get(rel);
    if (existing === undefined) return false;
    if (existing.pending) await existing.pending;
    if (existing.kind === 'dir') {
      if (newKind === 'dir') return true;
      await this.#removeTree(rel);
      return false;
    }
    if (existing.linked && this.#xattrs.has(rel)) await this.#flushXattrs();
    this.#xattrs.delete(rel);
    unlinkSync(this.#abs(rel));
    this.#nodes.delete(rel);
    return false;
  }

  async #removeTree(rel: string): Promise<void> {
    if (rel === '') throw hostile('an entry would replace the layer root');
    await Promise.all(this.#pending);
    const prefix = `${rel}/`;
    const gone = [...this.#nodes.keys()].filter((k) => k === rel || k.startsWith(prefix));
    if (gone.some((k) => this.#nodes.get(k)?.linked && this.#xattrs.has(k))) await this.#flushXattrs();
    rmSync(this.#abs(rel), { recursive: true, force: true });
    for (const k of gone) {
      this.#nodes.delete(k);
      this.#xattrs.delete(k);
    }
  }

  // ── entry kinds ──

  async #dir(rel: string, e: TarEntry): Promise<void> {
    const keep = await this.#prepare(rel, 'dir');
    let node = this.#nodes.get(rel);
    if (!keep || node === undefined) {
      mkdirSync(this.#abs(rel), 0o755);
      node = { kind: 'dir' };
      this.#nodes.set(rel, node);
      this.stats.dirs++;
    }
    node.meta = { mode: e.mode, uid: e.uid, gid: e.gid, atime: e.atime, mtime: e.mtime };
    node.implicit = false;
    this.#queueXattrs(rel, e.xattrs);
  }

  async #file(rel: string, e: TarEntry, parser: TarParser): Promise<void> {
    await this.#prepare(rel, 'file');
    const abs = this.#abs(rel);
    if (e.size <= SMALL_FILE_MAX) await this.#smallFile(abs, e, parser);
    else await this.#largeFile(abs, e, parser);
    this.#nodes.set(rel, { kind: 'file' });
    this.#queueXattrs(rel, e.xattrs);
    this.stats.files++;
    this.stats.bytes += e.size;
  }

  async #smallFile(abs: string, e: TarEntry, parser: TarParser): Promise<void> {
    const chunks: Buffer[] = [];
    while (parser.dataLeft > 0) chunks.push(await parser.read(parser.dataLeft));
    const fd = openSync(abs, CREATE_FLAGS, e.mode & 0o777);
    try {
      if (e.size > 0) writeAllSync(fd, chunks, abs);
      this.#fileMetaSync(fd, e);
    } finally {
      closeSync(fd);
    }
  }

  async #largeFile(abs: string, e: TarEntry, parser: TarParser): Promise<void> {
    const handle = await open(abs, CREATE_FLAGS, e.mode & 0o777);
    try {
      let inflight: Promise<void> | null = null;
      let batch: Buffer[] = [];
      let batchBytes = 0;
      while (parser.dataLeft > 0) {
        const chunk = await parser.read(parser.dataLeft);
        batch.push(chunk);
        batchBytes += chunk.length;
        if (batchBytes < WRITE_BATCH && parser.dataLeft > 0) continue;
        // One batch in flight while the next is read: overlap without unbounded buffering.
        if (inflight !== null) await inflight;
        inflight = writeAll(handle, batch, abs);
        inflight.catch(() => {}); // awaited below; this only keeps a fast failure from being "unhandled"
        batch = [];
        batchBytes = 0;
      }
      if (inflight !== null) await inflight;
      this.#fileMetaSync(handle.fd, e);
    } finally {
      await handle.close();
    }
  }

  /** chown before chmod: chown clears setuid/setgid. Skip both when creation already got them right. */
  #fileMetaSync(fd: number, e: TarEntry): void {
    if (this.#needsChown(e)) fchownSync(fd, e.uid, e.gid);
    if (e.mode !== (e.mode & 0o777 & ~this.#umask)) fchmodSync(fd, e.mode);
    futimesSync(fd, e.atime, e.mtime);
  }

  async #symlink(rel: string, e: TarEntry): Promise<void> {
    if (e.linkname === '') throw hostile(`symlink ${JSON.stringify(e.name)} has an empty target`);
    await this.#prepare(rel, 'symlink');
    const abs = this.#abs(rel);
    symlinkSync(e.linkname, abs);
    this.#nodes.set(rel, { kind: 'symlink' });
    if (this.#needsChown(e)) lchownSync(abs, e.uid, e.gid);
    lutimesSync(abs, e.atime, e.mtime);
    this.#queueXattrs(rel, e.xattrs);
    this.stats.files++;
  }

  async #hardlink(rel: string, e: TarEntry): Promise<void> {
    const target = cleanPath(e.linkname, `hardlink target of ${JSON.stringify(e.name)}`);
    const node = this.#nodes.get(target);
    if (node === undefined) throw hostile(`hardlink ${JSON.stringify(e.name)} points to ${JSON.stringify(e.linkname)}, which is not in this layer`);
    if (node.kind === 'dir') throw hostile(`hardlink ${JSON.stringify(e.name)} points to a directory`);
    if (target === rel) throw hostile(`hardlink ${JSON.stringify(e.name)} points to itself`);
    await this.#prepare(rel, node.kind);
    if (this.#nodes.get(target) !== node) throw hostile(`hardlink ${JSON.stringify(e.name)}: its target was removed by the link itself`);
    if (node.pending) await node.pending;
    // link(2) does not follow a final-component symlink, and every parent of `target` is a
    // directory we created, so this stays inside the layer.
    linkSync(this.#abs(target), this.#abs(rel));
    node.linked = true;
    this.#nodes.set(rel, { kind: node.kind, linked: true });
    this.stats.files++;
  }

  async #special(rel: string, e: TarEntry): Promise<void> {
    await this.#prepare(rel, 'special');
    const abs = this.#abs(rel);
    const args = e.type === 'fifo'
      ? ['--', abs, 'p']
      : ['--', abs, e.type === 'char' ? 'c' : 'b', String(e.devmajor), String(e.devminor)];
    const node: Node = { kind: 'special' };
    node.pending = this.#track(this.#spawns.run(async () => {
      await runTool('mknod', args);
      if (this.#needsChown(e)) lchownSync(abs, e.uid, e.gid);
      chmodSync(abs, e.mode);
      lutimesSync(abs, e.atime, e.mtime);
    }, this.#stop.signal));
    this.#nodes.set(rel, node);
    this.#queueXattrs(rel, e.xattrs);
    this.stats.files++;
  }

  async #whiteout(rel: string, base: string): Promise<void> {
    if (base === OPAQUE_MARKER) {
      const dir = parentOf(rel);
      if (this.#nodes.get(dir)?.kind !== 'dir') {
        this.#ensureParents(dir === '' ? 'x' : `${dir}/x`);
      }
      this.#nodes.get(dir)!.opaque = true;
      return;
    }
    if (base.startsWith(WHITEOUT_PREFIX + WHITEOUT_PREFIX)) return; // aufs bookkeeping (.wh..wh.plnk etc.)
    const name = base.slice(WHITEOUT_PREFIX.length);
    if (name === '' || name === '.' || name === '..') throw hostile(`invalid whiteout ${JSON.stringify(rel)}`);
    const target = parentOf(rel) === '' ? name : `${parentOf(rel)}/${name}`;
    await this.#prepare(target, 'special');
    const node: Node = { kind: 'special' };
    const model = this.#whiteoutModel;
    if (model !== null && this.#nodes.get(model.rel) === model.node) {
      await model.node.pending;
      linkSync(this.#abs(model.rel), this.#abs(target));
    } else {
      node.pending = this.#track(this.#spawns.run(() => runTool('mknod', ['--', this.#abs(target), 'c', '0', '0']).then(() => {}), this.#stop.signal));
      this.#whiteoutModel = { rel: target, node };
    }
    this.#nodes.set(target, node);
    this.stats.whiteouts++;
  }

  // ── deferred work ──

  #track(work: Promise<void>): Promise<void> {
    work.catch(() => {}); // awaited by whoever needs it and in #finish; never an unhandled rejection
    this.#pending.add(work);
    const forget = (): void => {
      this.#pending.delete(work);
    };
    work.then(forget, forget);
    return work;
  }

  #queueXattrs(rel: string, xattrs: Map<string, Buffer> | null): void {
    if (xattrs === null) {
      this.#xattrs.delete(rel);
      return;
    }
    this.#xattrs.set(rel, xattrs);
  }

  /** One setfattr for every queued xattr (spawning per file would dominate layers that label everything). */
  async #flushXattrs(): Promise<void> {
    const opaque = [...this.#nodes].filter(([, n]) => n.opaque === true && n.kind === 'dir').map(([rel]) => rel);
    if (this.#xattrs.size === 0 && opaque.length === 0) return;
    let dump = '';
    for (const [rel, attrs] of this.#xattrs) {
      dump += `# file: ${quoteDump(this.#abs(rel))}\n`;
      for (const [name, value] of attrs) dump += `${quoteDump(name)}=0s${value.toString('base64')}\n`;
      dump += '\n';
    }
    for (const rel of opaque) dump += `# file: ${quoteDump(this.#abs(rel))}\n${OPAQUE_XATTR}=0s${Buffer.from('y').toString('base64')}\n\n`;
    this.#xattrs.clear();
    for (const rel of opaque) this.#nodes.get(rel)!.opaque = false;
    try {
      await runTool('setfattr', ['-h', '--restore=-'], dump);
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr ?? '';
      // Like containerd: a filesystem without xattr support for a namespace is not fatal.
      const lines = stderr.split('\n').filter((l) => l.trim() !== '');
      if (lines.length === 0 || !lines.every((l) => l.includes('Operation not supported'))) {
        throw new BerthError('internal', `cannot set layer xattrs: ${errorMessage(err)}`, { cause: err });
      }
    }
  }

  /** Directory metadata last: creating children changes a directory's mtime. */
  async #finish(): Promise<void> {
    await Promise.all(this.#pending);
    const dirs = [...this.#nodes].filter(([, n]) => n.meta !== undefined);
    for (const [rel, node] of dirs) {
      const m = node.meta!;
      const abs = this.#abs(rel);
      if (this.#needsChown(m)) lchownSync(abs, m.uid, m.gid);
      chmodSync(abs, m.mode);
    }
    await this.#flushXattrs();
    for (const [rel, node] of dirs) lutimesSync(this.#abs(rel), node.meta!.atime, node.meta!.mtime);
    const implicit = [...this.#nodes].filter(([, n]) => n.kind === 'dir' && n.implicit === true).map(([rel]) => rel);
    if (implicit.length > 0) this.stats.implicitDirs = implicit;
  }
}

/**
 * The in-memory tree model is only exact for an empty root. A setgid root would hand its group to
 * every new inode and make skipping chown for "already ours" owners wrong, so drop that bit (the
 * layer's own root entry, if any, sets the final mode).
 */
function prepareRoot(dir: string): void {
  if (readdirSync(dir).length !== 0) {
    throw new BerthError('failed-precondition', `unpack target ${dir} is not empty`);
  }
  const { mode } = statSync(dir);
  if (mode & S_ISGID) chmodSync(dir, mode & 0o7777 & ~S_ISGID);
}

/**
 * Unpack an uncompressed layer tar into `dir` (which must exist and be empty) in overlayfs upper-dir
 * form. Consumes the whole stream, including trailing padding, so an upstream digest sees every byte.
 * Throws BerthError('invalid-argument') for hostile or malformed tars; the partial tree is then the
 * caller's to remove.
 */
export async function unpackLayer(tar: Readable, dir: string, opts: UnpackOptions = {}): Promise<UnpackStats> {
  prepareRoot(dir);
  const reader = new ByteReader(tar);
  const unpacker = new Unpacker(dir);
  try {
    await unpacker.run(new TarParser(reader), opts.signal);
    await reader.drain();
  } catch (err) {
    await reader.close().catch(() => {});
    throw err;
  }
  return unpacker.stats;
}
