// Persistent image metadata. Two kinds of record, each one JSON file written crash-safely:
//   images/<id-hex>.json  what an image is (manifest, config, layers with chain IDs, user, size)
//   names/<sha256(name)>.json  one name (repo:tag or repo@digest) → image ID
// Moving a tag is one atomic rewrite of one name file. A pull writes the image record before any
// name, so a crash leaves at most an unnamed record, which the next GC removes: a half-pulled
// image is never visible.
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic, syncDir } from '../util/atomic-file.ts';
import { digestHex, isDigest, sha256 } from '../util/digest.ts';

export interface LayerRecord {
  /** Digest of the blob as the registry serves it (compressed). */
  digest: string;
  mediaType: string;
  size: number;
  /** Digest of the uncompressed tar, from the config's rootfs.diff_ids. */
  diffId: string;
  chainId: string;
}

export interface ImageRecord {
  /** The config digest, which is the image ID. */
  id: string;
  manifestDigest: string;
  manifestMediaType: string;
  /** The manifest list / OCI index the manifest was picked from, when there was one. */
  indexDigest?: string;
  configDigest: string;
  configSize: number;
  layers: LayerRecord[];
  /** The config's User field, verbatim. */
  user: string;
  createdAt: string;
}

export interface NameRecord {
  name: string;
  id: string;
}

const isStr = (v: unknown): v is string => typeof v === 'string';
const isSize = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isDig = (v: unknown): v is string => isStr(v) && isDigest(v);

function isLayerRecord(v: unknown): v is LayerRecord {
  const o = v as Partial<LayerRecord> | null;
  return typeof o === 'object' && o !== null && isDig(o.digest) && isStr(o.mediaType) && isSize(o.size) && isDig(o.diffId) && isDig(o.chainId);
}

/** The shape every reader of an image record relies on; anything else is damage, not an image. */
export function isImageRecord(v: unknown): v is ImageRecord {
  const o = v as Partial<ImageRecord> | null;
  return (
    typeof o === 'object' && o !== null &&
    isDig(o.id) && isDig(o.manifestDigest) && isStr(o.manifestMediaType) &&
    (o.indexDigest === undefined || isDig(o.indexDigest)) &&
    isDig(o.configDigest) && isSize(o.configSize) &&
    Array.isArray(o.layers) && o.layers.every(isLayerRecord) &&
    isStr(o.user) && isStr(o.createdAt)
  );
}

function isNameRecord(v: unknown): v is NameRecord {
  const o = v as Partial<NameRecord> | null;
  return typeof o === 'object' && o !== null && isStr(o.name) && o.name.length > 0 && isDig(o.id);
}

export class ImageRecords {
  readonly images = new Map<string, ImageRecord>();
  readonly names = new Map<string, NameRecord>();
  /** The reverse of `names`, so listing thousands of images stays linear. */
  private readonly namesById = new Map<string, Set<string>>();
  private readonly imagesDir: string;
  private readonly namesDir: string;

  constructor(root: string) {
    this.imagesDir = join(root, 'images');
    this.namesDir = join(root, 'names');
  }

  /** Loads every record; returns the paths of unreadable ones, which were moved aside. */
  async load(): Promise<string[]> {
    await mkdir(this.imagesDir, { recursive: true });
    await mkdir(this.namesDir, { recursive: true });
    const bad: string[] = [];
    for (const rec of await readRecords(this.imagesDir, isImageRecord, bad)) this.images.set(rec.id, rec);
    for (const rec of await readRecords(this.namesDir, isNameRecord, bad)) this.index(rec);
    return bad;
  }

  async putImage(rec: ImageRecord): Promise<void> {
    await writeFileAtomic(join(this.imagesDir, `${digestHex(rec.id)}.json`), JSON.stringify(rec));
    this.images.set(rec.id, rec);
  }

  /**
   * Not synced: callers remove an image's names (and sync them) first, so should a crash undo this
   * removal, the record is unnamed and the start-up GC removes it again.
   */
  async removeImage(id: string): Promise<void> {
    await rm(join(this.imagesDir, `${digestHex(id)}.json`), { force: true });
    this.images.delete(id);
  }

  async putName(name: string, id: string): Promise<void> {
    await writeFileAtomic(join(this.namesDir, nameFile(name)), JSON.stringify({ name, id } satisfies NameRecord));
    this.unindex(name);
    this.index({ name, id });
  }

  async removeName(name: string): Promise<void> {
    await rm(join(this.namesDir, nameFile(name)), { force: true });
    this.unindex(name);
  }

  async syncNames(): Promise<void> {
    await syncDir(this.namesDir);
  }

  namesOf(id: string): string[] {
    return [...(this.namesById.get(id) ?? [])];
  }

  private index(rec: NameRecord): void {
    this.names.set(rec.name, rec);
    let set = this.namesById.get(rec.id);
    if (!set) this.namesById.set(rec.id, (set = new Set()));
    set.add(rec.name);
  }

  private unindex(name: string): void {
    const old = this.names.get(name);
    if (!old) return;
    this.names.delete(name);
    const set = this.namesById.get(old.id);
    set?.delete(name);
    if (set?.size === 0) this.namesById.delete(old.id);
  }
}

/** Names may contain `/` and `:`, so files are named by the name's hash. */
function nameFile(name: string): string {
  return `${digestHex(sha256(name))}.json`;
}

/**
 * Reads every complete record; temp files from an interrupted write are removed. A record that
 * does not parse or does not have the shape `valid` checks (a damaged disk, a hand edit, a record
 * from another version) is renamed to `*.json.corrupt` and reported in `bad`, so one broken file
 * costs one image instead of keeping the daemon from starting or failing every ListImages.
 */
async function readRecords<T>(dir: string, valid: (v: unknown) => v is T, bad: string[]): Promise<T[]> {
  const out: T[] = [];
  for (const file of await readdir(dir)) {
    const path = join(dir, file);
    if (file.startsWith('.')) {
      await rm(path, { force: true });
      continue;
    }
    if (!file.endsWith('.json')) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(path, 'utf8'));
    } catch {
      parsed = undefined;
    }
    if (valid(parsed)) {
      out.push(parsed);
    } else {
      await rename(path, `${path}.corrupt`);
      bad.push(`${path}.corrupt`);
    }
  }
  return out;
}
