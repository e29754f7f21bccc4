// Persistent image metadata. Two kinds of record, each one JSON file written crash-safely:
//   images/<id-hex>.json  what an image is (manifest, config, layers with chain IDs, user, size)
//   names/<sha256(name)>.json  one name (repo:tag or repo@digest) → image ID
// Moving a tag is one atomic rewrite of one name file. A pull writes the image record before any
// name, so a crash leaves at most an unnamed record, which the next GC removes: a half-pulled
// image is never visible.
import { join } from 'node:path';
import { hashedFileName, RecordDir } from '../store/record-dir.ts';
import { digestHex, isDigest } from '../util/digest.ts';

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
  /** The reverse of `names`, so listing thousands of images stays linear. */
  private readonly namesById = new Map<string, Set<string>>();
  private readonly imageDir: RecordDir<ImageRecord>;
  /** Names may contain `/` and `:`, so their files are named by the name's hash. */
  private readonly nameDir: RecordDir<NameRecord>;

  constructor(root: string) {
    this.imageDir = new RecordDir(join(root, 'images'), isImageRecord, { key: (r) => r.id, fileName: digestHex });
    this.nameDir = new RecordDir(join(root, 'names'), isNameRecord, { key: (n) => n.name, fileName: hashedFileName });
  }

  get images(): ReadonlyMap<string, ImageRecord> {
    return this.imageDir.byKey;
  }

  get names(): ReadonlyMap<string, NameRecord> {
    return this.nameDir.byKey;
  }

  /**
   * Loads every record; returns the paths of unreadable ones, which were moved aside (see
   * RecordDir.load), so one broken file costs one image instead of the daemon's start.
   */
  async load(): Promise<string[]> {
    const bad = [...(await this.imageDir.load()), ...(await this.nameDir.load())];
    for (const rec of this.nameDir.all()) this.index(rec);
    return bad;
  }

  async putImage(rec: ImageRecord): Promise<void> {
    await this.imageDir.put(rec);
  }

  /**
   * Not synced: callers remove an image's names (and sync them) first, so should a crash undo this
   * removal, the record is unnamed and the start-up GC removes it again.
   */
  async removeImage(id: string): Promise<void> {
    await this.imageDir.remove(id, { durable: false });
  }

  async putName(name: string, id: string): Promise<void> {
    this.unindex(name);
    this.index({ name, id });
    await this.nameDir.put({ name, id });
  }

  /** Not synced: callers remove several and then call syncNames once. */
  async removeName(name: string): Promise<void> {
    this.unindex(name);
    await this.nameDir.remove(name, { durable: false });
  }

  async syncNames(): Promise<void> {
    await this.nameDir.sync();
  }

  namesOf(id: string): string[] {
    return [...(this.namesById.get(id) ?? [])];
  }

  private index(rec: NameRecord): void {
    let set = this.namesById.get(rec.id);
    if (!set) this.namesById.set(rec.id, (set = new Set()));
    set.add(rec.name);
  }

  private unindex(name: string): void {
    const old = this.names.get(name);
    if (!old) return;
    const set = this.namesById.get(old.id);
    set?.delete(name);
    if (set?.size === 0) this.namesById.delete(old.id);
  }
}
