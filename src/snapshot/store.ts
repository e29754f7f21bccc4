// Unpacked layers ("snapshots") keyed by chain ID, each one overlayfs-ready:
//
//   <root>/<chainIdHex>/fs          the layer in upper-dir form (whiteouts as 0/0 char devices)
//   <root>/<chainIdHex>/info.json   SnapshotInfo
//   <root>/.tmp-<random>/           work in progress, or a removal in progress; swept at startup
//
// A snapshot appears under its real name only by renaming a finished temp dir, and disappears by
// renaming it back to a temp name, so a crash at any point leaves either a whole snapshot or nothing
// (plus a temp dir for cleanup()). Each snapshot holds only its own layer, so layers of one image can
// be unpacked concurrently and in any order; overlay stacks them at mount time.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { syncDir, writeFileAtomic } from '../util/atomic-file.ts';
import { chainIds, digestHex, isDigest } from '../util/digest.ts';
import { BerthError, errorMessage } from '../util/errors.ts';
import type { UnpackStats } from './unpack.ts';

const TMP_PREFIX = '.tmp-';
const HEX_RE = /^[a-f0-9]{64}$/;

export interface SnapshotInfo {
  chainId: string;
  diffId: string;
  /** Chain ID of the layer below, null for a base layer. */
  parent: string | null;
  /** Regular-file bytes in this layer. */
  size: number;
  /** Inodes this layer created (files, directories, whiteouts): an estimate for ImageFsInfo. */
  inodes: number;
  createdAt: string;
}

/** Where a new snapshot's files come from. */
export interface LayerFiller {
  /** Writes the layer into `fsDir` (empty, exists). */
  fill(fsDir: string): Promise<UnpackStats>;
  /** The snapshot exists already: consume or drop the input so its producer finishes. */
  skip(): Promise<void>;
  /** The unpack failed: stop the producer. */
  cancel(): void;
}

export interface SnapshotStoreOptions {
  /**
   * Flush the layer's file data (syncfs) before it appears under its real name, so it survives a
   * power cut, not just a daemon crash. Costs the full writeback time of every layer on each pull.
   */
  syncData?: boolean;
}

export class SnapshotStore {
  readonly root: string;
  readonly #syncData: boolean;
  #index: Promise<Map<string, SnapshotInfo>> | null = null;
  readonly #inFlight = new Map<string, Promise<SnapshotInfo>>();
  /** Temp dirs of our own running unpacks, which cleanup() must not sweep. */
  readonly #ownTemps = new Set<string>();

  constructor(root: string, options: SnapshotStoreOptions = {}) {
    this.root = root;
    this.#syncData = options.syncData ?? false;
  }

  /** The directory overlay uses for this layer. */
  fsPath(chainId: string): string {
    return join(this.root, digestHex(chainId), 'fs');
  }

  /** Layers base-first (manifest order) → lowerdir list top-first, as overlayfs wants it. */
  lowerDirs(chainIdsBaseFirst: readonly string[]): string[] {
    return chainIdsBaseFirst.map((id) => this.fsPath(id)).reverse();
  }

  async has(chainId: string): Promise<boolean> {
    return (await this.#loadIndex()).has(digestHex(chainId));
  }

  async get(chainId: string): Promise<SnapshotInfo | undefined> {
    return (await this.#loadIndex()).get(digestHex(chainId));
  }

  async list(): Promise<SnapshotInfo[]> {
    return [...(await this.#loadIndex()).values()];
  }

  /** Cheap totals from the recorded sizes, for ImageFsInfo. */
  async usage(): Promise<{ bytes: number; inodes: number }> {
    let bytes = 0;
    let inodes = 0;
    for (const info of (await this.#loadIndex()).values()) {
      bytes += info.size;
      inodes += info.inodes;
    }
    return { bytes, inodes };
  }

  /**
   * Create snapshot `chainId` by letting `source.fill` write the layer into an empty directory
   * (the pull pipeline fills it from a worker thread). Concurrent calls for one chain ID share one
   * unpack (the others' `skip` lets their producers finish); an existing snapshot is returned as is.
   */
  unpackWith(chainId: string, parent: string | null, diffId: string, source: LayerFiller): Promise<SnapshotInfo> {
    const running = this.#inFlight.get(chainId);
    if (running !== undefined) return source.skip().then(() => running);
    const job = this.#unpackOnce(chainId, parent, diffId, source)
      .catch((err: unknown) => {
        source.cancel();
        throw err;
      })
      .finally(() => this.#inFlight.delete(chainId));
    this.#inFlight.set(chainId, job);
    return job;
  }

  /**
   * Remove a snapshot. Returns false if it does not exist or is being unpacked right now (an
   * in-flight unpack belongs to a pull that is about to reference it).
   */
  async remove(chainId: string): Promise<boolean> {
    const hex = digestHex(chainId);
    if (this.#inFlight.has(chainId)) return false;
    const index = await this.#loadIndex();
    const grave = join(this.root, `${TMP_PREFIX}${randomSuffix()}`);
    try {
      await rename(join(this.root, hex), grave);
    } catch (err) {
      if (errCode(err) === 'ENOENT') {
        index.delete(hex);
        return false;
      }
      throw err;
    }
    index.delete(hex);
    await syncDir(this.root);
    await rm(grave, { recursive: true, force: true });
    return true;
  }

  /** Startup sweep: temp dirs left by a crash, and anything under a snapshot name without valid info. */
  async cleanup(): Promise<number> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    let removed = 0;
    for (const name of await readdir(this.root)) {
      const path = join(this.root, name);
      if (name.startsWith(TMP_PREFIX) && !this.#ownTemps.has(path)) {
        await rm(path, { recursive: true, force: true });
        removed++;
      } else if (HEX_RE.test(name) && (await readInfo(path, name)) === null) {
        await rm(path, { recursive: true, force: true });
        removed++;
      }
    }
    await this.#loadIndex(); // only unindexed names were swept, so a loaded index stays right
    return removed;
  }

  async #unpackOnce(chainId: string, parent: string | null, diffId: string, source: LayerFiller): Promise<SnapshotInfo> {
    validateChain(chainId, parent, diffId);
    const hex = digestHex(chainId);
    const index = await this.#loadIndex();
    const existing = index.get(hex);
    if (existing !== undefined) {
      await source.skip();
      return existing;
    }
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    const tmp = await mkdtemp(join(this.root, TMP_PREFIX));
    this.#ownTemps.add(tmp);
    try {
      const info = await this.#fill(tmp, chainId, parent, diffId, source);
      const winner = await this.#commit(tmp, hex, info);
      index.set(hex, winner);
      return winner;
    } finally {
      await rm(tmp, { recursive: true, force: true });
      this.#ownTemps.delete(tmp);
    }
  }

  async #fill(tmp: string, chainId: string, parent: string | null, diffId: string, source: LayerFiller): Promise<SnapshotInfo> {
    const fs = join(tmp, 'fs');
    await mkdir(fs, { mode: 0o755 });
    const stats = await source.fill(fs);
    if (this.#syncData) await syncFilesystem(fs);
    const info: SnapshotInfo = {
      chainId,
      diffId,
      parent,
      size: stats.bytes,
      inodes: stats.files + stats.dirs + stats.whiteouts + 1,
      createdAt: new Date().toISOString(),
    };
    await writeFileAtomic(join(tmp, 'info.json'), `${JSON.stringify(info, null, 2)}\n`);
    return info;
  }

  /** Rename into place; if another process or call got there first, theirs wins and ours is dropped. */
  async #commit(tmp: string, hex: string, info: SnapshotInfo): Promise<SnapshotInfo> {
    const final = join(this.root, hex);
    try {
      await rename(tmp, final);
    } catch (err) {
      const code = errCode(err);
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
      const theirs = await readInfo(final, hex);
      if (theirs === null) throw new BerthError('internal', `snapshot ${hex} exists but has no valid info.json`, { cause: err });
      return theirs;
    }
    await syncDir(this.root);
    return info;
  }

  #loadIndex(): Promise<Map<string, SnapshotInfo>> {
    this.#index ??= this.#readIndex().catch((err: unknown) => {
      this.#index = null; // let the next call retry (e.g. the disk came back)
      throw err;
    });
    return this.#index;
  }

  async #readIndex(): Promise<Map<string, SnapshotInfo>> {
    const index = new Map<string, SnapshotInfo>();
    let names: string[];
    try {
      names = await readdir(this.root);
    } catch (err) {
      if (errCode(err) === 'ENOENT') return index;
      throw err;
    }
    await Promise.all(
      names.filter((n) => HEX_RE.test(n)).map(async (hex) => {
        const info = await readInfo(join(this.root, hex), hex);
        if (info !== null) index.set(hex, info);
      }),
    );
    return index;
  }
}

/** A chain ID must follow from its parent and diff ID; a mismatch means the caller mixed up layers. */
function validateChain(chainId: string, parent: string | null, diffId: string): void {
  for (const [what, value] of [['chain ID', chainId], ['diff ID', diffId], ['parent chain ID', parent]] as const) {
    if (value !== null && !isDigest(value)) throw new BerthError('invalid-argument', `snapshot ${what} ${JSON.stringify(value)} is not a sha256 digest`);
  }
  const expected = parent === null ? diffId : chainIds([parent, diffId])[1];
  if (expected !== chainId) {
    throw new BerthError('invalid-argument', `chain ID ${chainId} does not match parent ${parent ?? '(none)'} + diff ID ${diffId}`);
  }
}

async function readInfo(dir: string, hex: string): Promise<SnapshotInfo | null> {
  try {
    const info = JSON.parse(await readFile(join(dir, 'info.json'), 'utf8')) as Partial<SnapshotInfo>;
    if (typeof info.chainId !== 'string' || !isDigest(info.chainId) || digestHex(info.chainId) !== hex) return null;
    if (typeof info.diffId !== 'string' || typeof info.size !== 'number') return null;
    return {
      chainId: info.chainId,
      diffId: info.diffId,
      parent: typeof info.parent === 'string' ? info.parent : null,
      size: info.size,
      inodes: typeof info.inodes === 'number' ? info.inodes : 0,
      createdAt: typeof info.createdAt === 'string' ? info.createdAt : '',
    };
  } catch {
    return null;
  }
}

const execFileAsync = promisify(execFile);

/** `sync -f` is syncfs(2): one call flushes every file of the layer, unlike an fsync per file. */
async function syncFilesystem(path: string): Promise<void> {
  try {
    await execFileAsync('sync', ['-f', path]);
  } catch (err) {
    throw new BerthError('internal', `cannot flush snapshot data: ${errorMessage(err)}`, { cause: err });
  }
}

function randomSuffix(): string {
  return randomBytes(6).toString('hex');
}

function errCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}
