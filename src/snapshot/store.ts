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
import { chmod, lchown, lstat, mkdir, mkdtemp, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { syncDir, writeFileAtomic } from '../util/atomic-file.ts';
import { runCommand } from '../util/run-command.ts';
import { chainIds, digestHex, isDigest } from '../util/digest.ts';
import { BerthError, errnoCode, errorMessage } from '../util/errors.ts';
import type { UnpackStats } from './unpack.ts';
import { quoteDump, unquoteDump } from './xattr-dump.ts';

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
  /**
   * Directories the layer needed but did not list, still waiting to take the mode, owner and xattrs
   * of the same path below (inheritParentDirs); absent once done.
   */
  implicitDirs?: string[];
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
  /** Background deletions of removed snapshots' files. */
  readonly #removals = new Set<Promise<void>>();

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
      if (errnoCode(err) === 'ENOENT') {
        index.delete(hex);
        return false;
      }
      throw err;
    }
    index.delete(hex);
    // No directory sync: a crash that undoes the rename brings back a snapshot nothing references,
    // which the start-up GC removes again. The files go in the background, off the caller's path
    // (a removed image's layer can be thousands of inodes); the grave is swept at start if we stop.
    this.#ownTemps.add(grave);
    const gone = rm(grave, { recursive: true, force: true })
      .catch(() => undefined)
      .finally(() => {
        this.#ownTemps.delete(grave);
        this.#removals.delete(gone);
      });
    this.#removals.add(gone);
    return true;
  }

  /** Resolves once the files of removed snapshots are gone (for shutdown and tests). */
  async settle(): Promise<void> {
    await Promise.all(this.#removals);
  }

  /**
   * Gives each directory a layer created only as a missing parent the mode, owner and xattrs of the
   * same path in the nearest layer below that has it, as containerd's unpack onto the mounted parent
   * does (a layer adding `/tmp/x` keeps `/tmp` 1777; one adding a file in a user's 0700 home keeps
   * it theirs). Where no layer below has the path, it stays 0755 root. Layers unpack in parallel, so
   * this runs once every layer of an image exists, bottom-up, before the image is recorded; it is
   * idempotent, and a snapshot records when it is done.
   */
  async inheritParentDirs(chainIdsBaseFirst: readonly string[]): Promise<void> {
    const index = await this.#loadIndex();
    for (let i = 1; i < chainIdsBaseFirst.length; i++) {
      const hex = digestHex(chainIdsBaseFirst[i] as string);
      const info = index.get(hex);
      if (!info?.implicitDirs) continue;
      const below = chainIdsBaseFirst.slice(0, i).map((id) => this.fsPath(id)).reverse();
      await adoptLowerDirs(this.fsPath(chainIdsBaseFirst[i] as string), info.implicitDirs, below);
      const done: SnapshotInfo = { ...info };
      delete done.implicitDirs;
      await writeFileAtomic(join(this.root, hex, 'info.json'), `${JSON.stringify(done, null, 2)}\n`);
      index.set(hex, done);
    }
  }

  /** Startup sweep: temp dirs left by a crash, and anything under a snapshot name without valid info. */
  async cleanup(): Promise<number> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    await spreadSubtrees(this.root);
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
    let failed = false;
    try {
      const info = await this.#fill(tmp, chainId, parent, diffId, source);
      const winner = await this.#commit(tmp, hex, info);
      index.set(hex, winner);
      return winner;
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      // The first error explains the failure; one from removing the temp dir would only hide it
      // (the dir is then swept at the next start).
      await rm(tmp, { recursive: true, force: true }).catch((err: unknown) => {
        if (!failed) throw err;
      });
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
      ...(stats.implicitDirs && parent !== null ? { implicitDirs: stats.implicitDirs } : {}),
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
      const code = errnoCode(err);
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
      if (errnoCode(err) === 'ENOENT') return index;
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
    const implicit = info.implicitDirs;
    if (implicit !== undefined && !(Array.isArray(implicit) && implicit.every((p) => typeof p === 'string' && isInside(p)))) return null;
    return {
      ...(implicit !== undefined && implicit.length > 0 ? { implicitDirs: implicit } : {}),
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

/** A relative path that stays inside the layer: no empty, `.` or `..` components, not absolute. */
function isInside(rel: string): boolean {
  return rel !== '' && !rel.startsWith('/') && rel.split('/').every((c) => c !== '' && c !== '.' && c !== '..' && !c.includes('\0'));
}

/**
 * For each of `rels` (directories in `layerFs`), finds the same path in `lowerFs` (nearest first);
 * the first layer that has it decides: a directory gives its mode, owner and xattrs, anything else
 * (a file, a whiteout) hides the lower layers and leaves 0755 root.
 */
async function adoptLowerDirs(layerFs: string, rels: readonly string[], lowerFs: readonly string[]): Promise<void> {
  const sources: Array<{ from: string; to: string }> = [];
  for (const rel of rels) {
    if (!isInside(rel)) continue;
    const to = join(layerFs, rel);
    for (const lower of lowerFs) {
      const from = join(lower, rel);
      const st = await lstat(from).catch(() => null);
      if (st === null) continue;
      if (st.isDirectory()) {
        const mine = await lstat(to);
        if (!mine.isDirectory()) break;
        await lchown(to, st.uid, st.gid);
        await chmod(to, st.mode & 0o7777);
        sources.push({ from, to });
      }
      break;
    }
  }
  await copyXattrs(sources);
}

/** Copies every xattr but overlay's own (a lower dir's opaque mark must not hide our layer's view). */
async function copyXattrs(pairs: ReadonlyArray<{ from: string; to: string }>): Promise<void> {
  if (pairs.length === 0) return;
  let dump: string;
  try {
    ({ stdout: dump } = await execFileAsync('getfattr', ['-h', '-d', '-m', '-', '-e', 'base64', '--absolute-names', '--', ...pairs.map((p) => p.from)], { maxBuffer: 64 << 20, env: { ...process.env, LC_ALL: 'C' } }));
  } catch (err) {
    throw new BerthError('internal', `cannot read xattrs of lower layer directories: ${errorMessage(err)}`, { cause: err });
  }
  const target = new Map(pairs.map((p) => [p.from, p.to]));
  let restore = '';
  let to: string | undefined;
  for (const line of dump.split('\n')) {
    if (line.startsWith('# file: ')) {
      to = target.get(unquoteDump(line.slice('# file: '.length)));
      if (to !== undefined) restore += `# file: ${quoteDump(to)}\n`;
    } else if (line === '') {
      if (to !== undefined) restore += '\n';
      to = undefined;
    } else if (to !== undefined && !line.startsWith('trusted.overlay.')) {
      restore += `${line}\n`;
    }
  }
  if (!restore.includes('=')) return;
  await new Promise<void>((resolve, reject) => {
    const child = execFile('setfattr', ['-h', '--restore=-'], { env: { ...process.env, LC_ALL: 'C' } }, (err) => {
      if (err) reject(new BerthError('internal', `cannot copy xattrs of lower layer directories: ${errorMessage(err)}`, { cause: err }));
      else resolve();
    });
    child.stdin?.end(restore);
  });
}


/**
 * Marks `dir` as the top of unrelated directory trees (ext4's "T" attribute): each snapshot's
 * temp dir is then placed in a block group of its own instead of beside its siblings. On an ext4
 * without a journal, creating a file in a group where thousands were deleted in the last minute (a
 * removed image, a pod's scratch space) makes the kernel step past every recently deleted inode
 * first, on each create; measured on the bench image right after a 10k-file tree was removed, that
 * was ~2 s of kernel CPU per pull, against none in a fresh group. A hint only: on a filesystem
 * without the attribute (or without chattr) placement stays the kernel's default.
 */
async function spreadSubtrees(dir: string): Promise<void> {
  await runCommand('chattr', ['+T', dir], { step: 'mark the snapshot root as a top directory', timeoutMs: 10_000 }).catch(() => undefined);
}

/**
 * `sync -f` is syncfs(2): one call flushes every file of the layer, unlike an fsync per file. The
 * deadline is the writeback of a big layer on a slow disk, not a quick step.
 */
async function syncFilesystem(path: string): Promise<void> {
  await runCommand('sync', ['-f', path], { step: 'flush the unpacked layer to disk ([image] sync_layers)', timeoutMs: 600_000 });
}

function randomSuffix(): string {
  return randomBytes(6).toString('hex');
}
