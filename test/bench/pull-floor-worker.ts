// One thread of the pull floor (pull-floor.ts says what it measures): fetches the layers the main
// thread hands it, one at a time, and for each does only what any pull must do, with the fewest
// JavaScript objects and syscalls Node allows: sha256 and store the compressed bytes, inflate with
// Node's zlib, sha256 the tar, and write its entries straight from the inflated chunks.
import { createHash } from 'node:crypto';
import { chmodSync, closeSync, constants as fsc, fchmodSync, fchownSync, futimesSync, linkSync, lchownSync, lutimesSync, mkdirSync, openSync, symlinkSync, utimesSync, writeSync } from 'node:fs';
import { Agent, get } from 'node:http';
import { join } from 'node:path';
import { parentPort } from 'node:worker_threads';
import { createGunzip, createZstdDecompress } from 'node:zlib';

export interface FloorLayer {
  url: string;
  digest: string;
  diffId: string;
  /** Where the compressed blob goes, and the directory (existing, empty) the files go into. */
  blobPath: string;
  dir: string;
}
export type FloorIn = { type: 'layer'; layer: FloorLayer } | { type: 'exit' };
export type FloorOut = { type: 'ready' } | { type: 'done'; entries: number } | { type: 'error'; message: string };

const agent = new Agent({ keepAlive: true });
const CREATE = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;
// Like the runtimes' defaults: files are created with their mode, so only bits a umask of 022 or
// the open(2) call cannot set need a chmod.
const UMASK = 0o022;

/** A tar consumer fed inflated chunks: headers gathered into one reused block, file data written as it comes. */
class TarWriter {
  readonly #root: string;
  readonly #block = Buffer.alloc(512);
  #have = 0;
  /** Bytes of the current entry's data still to come, and the padding after it. */
  #left = 0;
  #pad = 0;
  #fd = -1;
  #file: { mode: number; uid: number; gid: number; mtime: number } | undefined;
  /** A PAX or GNU long-name record being gathered. */
  #meta: Buffer | undefined;
  #metaHave = 0;
  #metaType = 0;
  #paxPath: string | undefined;
  #paxLink: string | undefined;
  #paxSize: number | undefined;
  #ended = false;
  readonly #dirs: Array<[string, number]> = [];
  entries = 0;

  constructor(root: string) {
    this.#root = root;
  }

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.#ended) {
      if (this.#left > 0) {
        const n = Math.min(this.#left, chunk.length - at);
        if (this.#meta) {
          chunk.copy(this.#meta, this.#metaHave, at, at + n);
          this.#metaHave += n;
        } else if (this.#fd >= 0) {
          for (let off = at; off < at + n; ) off += writeSync(this.#fd, chunk, off, at + n - off);
        }
        at += n;
        this.#left -= n;
        if (this.#left === 0) this.#endData();
        continue;
      }
      if (this.#pad > 0) {
        const n = Math.min(this.#pad, chunk.length - at);
        at += n;
        this.#pad -= n;
        continue;
      }
      const n = Math.min(512 - this.#have, chunk.length - at);
      chunk.copy(this.#block, this.#have, at, at + n);
      this.#have += n;
      at += n;
      if (this.#have === 512) {
        this.#have = 0;
        this.#header();
      }
    }
  }

  /** Directory mtimes last: creating their children changed them. */
  finish(): void {
    for (const [path, mtime] of this.#dirs) utimesSync(path, mtime, mtime);
  }

  #header(): void {
    const b = this.#block;
    if (b[0] === 0) {
      this.#ended = true;
      return;
    }
    const type = b[156]!;
    const size = this.#paxSize ?? octal(b, 124, 12);
    this.#left = size;
    this.#pad = (512 - (size % 512)) % 512;
    if (type === 0x78 || type === 0x4c || type === 0x67) {
      this.#meta = Buffer.allocUnsafe(size);
      this.#metaHave = 0;
      this.#metaType = type;
      if (size === 0) this.#endData();
      return;
    }
    const prefix = b[345] !== 0 && b.toString('latin1', 257, 262) === 'ustar' ? `${text(b, 345, 155)}/` : '';
    const name = this.#paxPath ?? prefix + text(b, 0, 100);
    const link = this.#paxLink ?? text(b, 157, 100);
    this.#paxPath = this.#paxLink = this.#paxSize = undefined;
    const path = join(this.#root, name);
    const mode = octal(b, 100, 8) & 0o7777;
    const uid = octal(b, 108, 8);
    const gid = octal(b, 116, 8);
    const mtime = octal(b, 136, 12);
    this.entries++;
    const base = name.slice(name.lastIndexOf('/', name.length - 2) + 1);
    if (base.startsWith('.wh.')) {
      // A whiteout: one node made by one syscall (mknod there; an empty file is the cost Node can show).
      if (base !== '.wh..wh..opq') closeSync(openSync(join(path, '..', base.slice(4)), CREATE, 0));
      return;
    }
    switch (type) {
      case 0x35: // directory
        try {
          mkdirSync(path, mode);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        }
        if (uid !== 0 || gid !== 0) lchownSync(path, uid, gid);
        if ((mode & ~0o777) !== 0 || (mode & UMASK) !== 0) chmodSync(path, mode);
        this.#dirs.push([path, mtime]);
        return;
      case 0x32: // symlink
        symlinkSync(link, path);
        if (uid !== 0 || gid !== 0) lchownSync(path, uid, gid);
        lutimesSync(path, mtime, mtime);
        return;
      case 0x31: // hard link
        linkSync(join(this.#root, link), path);
        return;
      default: // regular file
        this.#fd = openSync(path, CREATE, mode & 0o777);
        this.#file = { mode, uid, gid, mtime };
        if (size === 0) this.#endData();
    }
  }

  #endData(): void {
    if (this.#meta) {
      const meta = this.#meta;
      this.#meta = undefined;
      if (this.#metaType === 0x4c) this.#paxPath = text(meta, 0, meta.length);
      else if (this.#metaType === 0x78) this.#pax(meta);
      return;
    }
    if (this.#fd < 0) return;
    const f = this.#file!;
    if (f.uid !== 0 || f.gid !== 0) fchownSync(this.#fd, f.uid, f.gid);
    if ((f.mode & ~0o777) !== 0 || (f.mode & UMASK) !== 0) fchmodSync(this.#fd, f.mode);
    futimesSync(this.#fd, f.mtime, f.mtime);
    closeSync(this.#fd);
    this.#fd = -1;
  }

  #pax(meta: Buffer): void {
    for (let pos = 0; pos < meta.length && meta[pos] !== 0; ) {
      const space = meta.indexOf(0x20, pos);
      const len = Number(meta.toString('latin1', pos, space));
      const eq = meta.indexOf(0x3d, space);
      const key = meta.toString('utf8', space + 1, eq);
      const value = meta.toString('utf8', eq + 1, pos + len - 1);
      if (key === 'path') this.#paxPath = value;
      else if (key === 'linkpath') this.#paxLink = value;
      else if (key === 'size') this.#paxSize = Number(value);
      pos += len;
    }
  }
}

function octal(b: Buffer, start: number, len: number): number {
  let v = 0;
  for (let i = start; i < start + len; i++) {
    const c = b[i]!;
    if (c >= 0x30 && c <= 0x37) v = v * 8 + (c - 0x30);
    else if (v > 0 || (c !== 0x20 && c !== 0)) break;
  }
  return v;
}

function text(b: Buffer, start: number, len: number): string {
  let end = b.indexOf(0, start);
  if (end < 0 || end > start + len) end = start + len;
  return b.toString('utf8', start, end);
}

async function pullLayer(layer: FloorLayer): Promise<number> {
  const res = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => get(layer.url, { agent }, resolve).once('error', reject));
  if (res.statusCode !== 200) throw new Error(`GET ${layer.url}: HTTP ${res.statusCode}`);
  const blobHash = createHash('sha256');
  const diffHash = createHash('sha256');
  const blobFd = openSync(layer.blobPath, CREATE, 0o644);
  const tar = new TarWriter(layer.dir);
  let inflate: ReturnType<typeof createGunzip> | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      res.on('data', (chunk: Buffer) => {
        blobHash.update(chunk);
        for (let off = 0; off < chunk.length; ) off += writeSync(blobFd, chunk, off);
        if (!inflate) {
          inflate = chunk[0] === 0x1f ? createGunzip({ chunkSize: 256 << 10 }) : createZstdDecompress({ chunkSize: 256 << 10 });
          inflate.on('data', (out: Buffer) => {
            diffHash.update(out);
            tar.push(out);
          });
          inflate.once('end', resolve);
          inflate.once('error', reject);
          inflate.on('drain', () => res.resume());
        }
        if (!inflate.write(chunk)) res.pause();
      });
      res.once('end', () => inflate?.end());
      res.once('error', reject);
    });
  } finally {
    closeSync(blobFd);
  }
  tar.finish();
  if (`sha256:${blobHash.digest('hex')}` !== layer.digest) throw new Error(`blob ${layer.digest}: digest mismatch`);
  if (`sha256:${diffHash.digest('hex')}` !== layer.diffId) throw new Error(`blob ${layer.digest}: diff ID mismatch`);
  return tar.entries;
}

const port = parentPort;
if (port) {
  const post = (msg: FloorOut): void => port.postMessage(msg);
  port.on('message', (msg: FloorIn) => {
    if (msg.type === 'exit') {
      agent.destroy();
      port.close();
      return;
    }
    pullLayer(msg.layer).then(
      (entries) => post({ type: 'done', entries }),
      (err: unknown) => post({ type: 'error', message: err instanceof Error ? err.message : String(err) }),
    );
  });
  post({ type: 'ready' });
}
