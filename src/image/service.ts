// The image service behind the CRI ImageService: names → images → blobs and snapshots.
// It owns the lookup rules (tags, repo digests, IDs and unique ID prefixes), pull de-duplication,
// and garbage collection of content no image needs any more.
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ContentStore } from '../content/store.ts';
import { SnapshotStore } from '../snapshot/store.ts';
import { UnpackPool } from '../snapshot/unpack-pool.ts';
import { RegistryClient } from './registry/client.ts';
import type { PullAuth, RegistryConfig } from './registry/config.ts';
import { formatDigested, formatName, formatTagged, parseReference, type ImageRef } from './reference.ts';
import { ImageRecords, type ImageRecord } from './records.ts';
import { Puller } from './pull.ts';
import { parsePlatform } from './registry/platform.ts';
import { parseConfig } from './manifest.ts';
import { addImage, addLease, collectGarbage, noCandidates, sweep, type SweepCandidates } from './gc.ts';
import { LeaseStore } from './leases.ts';
import { PinStore, type PinSet } from './pins.ts';
import type { ImageConfig } from './manifest.ts';
import { invalidArgument, notFound } from '../util/errors.ts';
import { SharedWork } from '../util/shared-work.ts';
import { trimMalloc } from '../util/malloc-trim.ts';
import type { PeerFetcher } from '../p2p/fetch.ts';

/** What the CRI reports about one image. */
export interface ImageRecordView {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  /** Compressed bytes of config + layers, as the registry serves them (what a pull transfers). */
  size: number;
  uid?: number;
  username: string;
  pinned: boolean;
}

/** An image as a holder of a lease sees it: enough to mount its layers and build a process from it. */
export interface LeasedImage {
  id: string;
  /** The name a container reports as its image ref: the repo digest it was pulled by, else the ID. */
  ref: string;
  repoTags: string[];
  /** Layer directories top-first, as overlayfs's lowerdir wants them. */
  lowerDirs: string[];
  config: ImageConfig;
}

/**
 * The settings the image service takes. The daemon's config (src/config/) carries them; the image
 * service does not know the rest of it, so src/config depends on src/image and never the reverse.
 */
export interface ImageServiceConfig {
  /** Persistent state root: metadata, content, snapshots live below it. */
  root: string;
  image: {
    /** `os/arch[/variant]` picked out of manifest lists. */
    platform: string;
    /** Layers downloaded and unpacked at once, across all pulls. */
    maxConcurrentDownloads: number;
    /** Attempts per registry request on 5xx or a reset connection. */
    pullAttempts: number;
    /** Flush each unpacked layer's files to disk before the layer is published (survives a power cut). */
    syncLayers: boolean;
  };
  registry: RegistryConfig;
}

const ID_PREFIX_RE = /^(?:sha256:)?([a-f0-9]{1,64})$/;

export class ImageService {
  private readonly config: ImageServiceConfig;
  private readonly log: Logger;
  private readonly records: ImageRecords;
  private readonly leases: LeaseStore;
  private readonly pins: PinStore;
  private readonly content: ContentStore;
  private readonly snapshots: SnapshotStore;
  private readonly registry: RegistryClient;
  private readonly puller: Puller;
  private readonly unpackers: UnpackPool;
  /** Whole-image pulls in progress, by canonical reference, so concurrent PullImage calls share one. */
  private readonly pulls = new SharedWork<string>();
  /** Pulls and GC exclude each other: GC must not sweep blobs a pull has written but not yet named. */
  private activePulls = 0;
  private gcRunning: Promise<void> | undefined;
  private gcWanted = false;
  /** What removed images and released leases held: the next sweep's candidates. */
  private unswept: SweepCandidates = noCandidates();
  private heapTimer: NodeJS.Timeout | undefined;
  private readonly peers: PeerFetcher | undefined;

  /** `peers`: other nodes asked first for blobs (p2p on). */
  constructor(config: ImageServiceConfig, log: Logger, peers?: PeerFetcher) {
    this.config = config;
    this.log = log;
    this.records = new ImageRecords(join(config.root, 'metadata'));
    this.leases = new LeaseStore(join(config.root, 'metadata', 'leases'));
    this.pins = new PinStore(join(config.root, 'metadata', 'pins'));
    this.content = new ContentStore(join(config.root, 'content'));
    this.snapshots = new SnapshotStore(join(config.root, 'snapshots'), { syncData: config.image.syncLayers });
    this.registry = new RegistryClient({
      config: config.registry,
      retry: { attempts: config.image.pullAttempts },
      logger: log.child({ registry: true }),
    });
    // One worker: measured on the 2-core VM with the bench image, a second one bought no wall time
    // (creating files in one filesystem is serialized in the kernel; inflate is not the bottleneck)
    // and cost ~25 MiB more at the peak. Layers beyond the first wait for it, downloading meanwhile
    // only as far as their back-pressure lets them.
    this.unpackers = new UnpackPool(1);
    this.puller = new Puller({
      registry: this.registry,
      content: this.content,
      snapshots: this.snapshots,
      log,
      platform: parsePlatform(config.image.platform),
      maxConcurrentDownloads: config.image.maxConcurrentDownloads,
      unpackers: this.unpackers,
      peers,
    });
    this.peers = peers;
  }

  /** The blobs (layers, configs, manifests) this node holds, for the p2p server to read. */
  get blobs(): ContentStore {
    return this.content;
  }

  /** Loads metadata, clears what a crash left half-written, and sweeps unreferenced content. */
  async init(): Promise<void> {
    await this.content.init();
    await this.snapshots.cleanup();
    for (const path of await this.records.load()) this.log.warn({ path }, 'unreadable image metadata moved aside; that image must be pulled again');
    for (const path of await this.leases.load()) this.log.warn({ path }, 'unreadable lease moved aside; its layers are no longer held');
    for (const path of await this.pins.load()) this.log.warn({ path }, 'unreadable pin set moved aside; its owner must set its pins again');
    await this.runGc();
  }

  /**
   * Stops for shutdown. Pulls still running are cut off rather than awaited (a stalled registry
   * must not hold up SIGTERM); what they leave behind is swept at the next start.
   */
  async close(): Promise<void> {
    clearTimeout(this.heapTimer);
    await this.gcRunning;
    await this.snapshots.settle();
    this.registry.close();
    this.peers?.close();
    await this.unpackers.close();
  }

  /**
   * Every image, or those a filter names. A filter with a tag, digest or ID matches one image; a
   * bare repository (`busybox`, `registry.k8s.io/pause`) matches every image tagged in it, as
   * `crictl images busybox` and `docker images busybox` expect.
   */
  list(filter?: string): ImageRecordView[] {
    const all = [...this.records.images.values()].map((rec) => this.view(rec)).sort((a, b) => a.id.localeCompare(b.id));
    if (!filter) return all;
    const repo = bareRepository(filter);
    if (repo) {
      const inRepo = all.filter((img) => [...img.repoTags, ...img.repoDigests].some((n) => n.startsWith(`${repo}:`) || n.startsWith(`${repo}@`)));
      if (inRepo.length > 0) return inRepo;
    }
    const one = this.find(filter);
    return one ? [one] : [];
  }

  /**
   * Finds an image by what a user or kubelet may type: a name (`busybox`, `repo:tag`,
   * `repo@sha256:…`), an ID (`sha256:<hex>` or bare hex) or a unique ID prefix.
   */
  find(nameOrId: string): ImageRecordView | undefined {
    const rec = this.lookup(nameOrId);
    return rec ? this.view(rec) : undefined;
  }

  private lookup(nameOrId: string): ImageRecord | undefined {
    const idMatch = ID_PREFIX_RE.exec(nameOrId);
    if (idMatch?.[1]?.length === 64) return this.records.images.get(`sha256:${idMatch[1]}`);
    let ref;
    try {
      ref = parseReference(nameOrId);
    } catch (err) {
      if (!idMatch) throw err;
    }
    if (ref) {
      const named = this.records.names.get(canonicalName(ref));
      if (named) return this.records.images.get(named.id);
    }
    if (idMatch) {
      const prefix = `sha256:${idMatch[1]}`;
      const hits = [...this.records.images.keys()].filter((id) => id.startsWith(prefix));
      if (hits.length > 1) throw invalidArgument(`image ID prefix ${nameOrId} is ambiguous: it matches ${hits.length} images`);
      if (hits[0]) return this.records.images.get(hits[0]);
    }
    return undefined;
  }

  private view(rec: ImageRecord): ImageRecordView {
    const names = this.records.namesOf(rec.id).sort();
    const { uid, username } = splitUser(rec.user);
    return {
      id: rec.id,
      repoTags: names.filter((n) => !n.includes('@')),
      repoDigests: names.filter((n) => n.includes('@')),
      size: rec.configSize + rec.layers.reduce((sum, l) => sum + l.size, 0),
      ...(uid === undefined ? {} : { uid }),
      username,
      pinned: names.some((n) => this.pins.has(n)),
    };
  }

  /** The `verbose` ImageStatus payload: the image config plus where berth keeps the image. */
  async verboseInfo(id: string): Promise<object> {
    const rec = this.records.images.get(id);
    if (!rec) return {};
    const config = parseConfig(await this.content.readBuffer(rec.configDigest), id);
    return {
      imageSpec: config,
      manifestDigest: rec.manifestDigest,
      manifestMediaType: rec.manifestMediaType,
      ...(rec.indexDigest ? { indexDigest: rec.indexDigest } : {}),
      chainIDs: rec.layers.map((l) => l.chainId),
      snapshots: this.snapshots.lowerDirs(rec.layers.map((l) => l.chainId)),
    };
  }

  /**
   * Pulls (or joins a concurrent pull of) an image and returns its ID. A caller whose `signal`
   * fires stops waiting; the pull itself stops, and cleans up, once no caller waits for it.
   */
  async pull(reference: string, auth?: PullAuth, signal?: AbortSignal): Promise<string> {
    const ref = parseReference(reference);
    return this.pulls.run(canonicalName(ref), signal, (s) => this.pullOnce(ref, auth, s));
  }

  private async pullOnce(ref: ImageRef, auth: PullAuth | undefined, signal: AbortSignal): Promise<string> {
    while (this.gcRunning) await this.gcRunning;
    this.activePulls++;
    try {
      const started = Date.now();
      const rec = await this.puller.pull(ref, auth, signal);
      // Record first, names second: a crash in between leaves an unnamed record that GC removes.
      await this.records.putImage(rec);
      // The repo digest is what the reference resolved to: the index for multi-platform images,
      // so that `name@<that digest>` (what a kubelet asks ImageStatus about) finds this image.
      const names = [`${formatName(ref)}@${rec.indexDigest ?? rec.manifestDigest}`];
      if (!ref.digest) names.push(formatTagged(ref));
      for (const name of names) await this.records.putName(name, rec.id);
      await this.records.syncNames();
      this.log.info({ image: canonicalName(ref), id: rec.id, ms: Date.now() - started }, 'pulled');
      return rec.id;
    } finally {
      this.activePulls--;
      if (this.activePulls === 0 && this.gcWanted) this.scheduleGc();
      if (this.activePulls === 0) this.shrinkHeapSoon();
    }
  }

  /**
   * A pull leaves the heap at its peak, and V8 under Node does not shrink an idle heap on its own;
   * one full collection a little after the last pull gives that memory back (only when the daemon
   * runs with --expose-gc, as bin/berthd.js starts it), and malloc_trim then hands the C++ memory
   * it freed, and whatever else glibc kept below live chunks, back to the kernel.
   */
  private shrinkHeapSoon(): void {
    const collect = (globalThis as { gc?: () => void }).gc;
    clearTimeout(this.heapTimer);
    this.heapTimer = setTimeout(() => {
      if (this.activePulls > 0) return;
      collect?.();
      trimMalloc();
    }, 2000);
    this.heapTimer.unref();
  }

  /**
   * Holds the image's layers and config for `holder` (e.g. `container/<id>`) until releaseLease,
   * even if the image loses its names meanwhile. Taking a lease again replaces the old one.
   */
  async lease(holder: string, nameOrId: string): Promise<LeasedImage> {
    // A GC already running marked without this lease; let it finish before looking the image up.
    while (this.gcRunning) await this.gcRunning;
    const rec = this.lookup(nameOrId);
    if (!rec) throw notFound(`image ${JSON.stringify(nameOrId)} is not present; pull it first`);
    const chainIds = rec.layers.map((l) => l.chainId);
    // put() records the lease in memory before its first await, so any later GC sees it.
    await this.leases.put({ holder, imageId: rec.id, chainIds, blobs: [rec.configDigest] });
    return this.leasedView(rec.id, chainIds, rec.configDigest);
  }

  /** What a holder's lease gives it, from the lease alone: it works after the image was removed. */
  async leased(holder: string): Promise<LeasedImage | undefined> {
    const lease = this.leases.get(holder);
    if (!lease) return undefined;
    const configDigest = lease.blobs[0];
    if (!configDigest) return undefined;
    return this.leasedView(lease.imageId, lease.chainIds, configDigest);
  }

  /** Lets GC take what `holder` held, once no image or other lease needs it. Unknown holders are fine. */
  async releaseLease(holder: string): Promise<void> {
    const lease = this.leases.get(holder);
    if (!(await this.leases.release(holder)) || !lease) return;
    addLease(this.unswept, lease);
    this.scheduleGc();
  }

  private async leasedView(id: string, chainIds: string[], configDigest: string): Promise<LeasedImage> {
    const names = this.records.namesOf(id).sort();
    const digested = names.find((n) => n.includes('@'));
    return {
      id,
      ref: digested ?? id,
      repoTags: names.filter((n) => !n.includes('@')),
      lowerDirs: this.snapshots.lowerDirs(chainIds),
      config: parseConfig(await this.content.readBuffer(configDigest), id),
    };
  }

  /** Removes the image with every name it has (the CRI contract); unknown images are fine. */
  async remove(nameOrId: string): Promise<void> {
    const rec = this.lookup(nameOrId);
    if (!rec) return;
    // The names are what makes an image exist: their removal is made durable before answering. The
    // record and the files are not synced: should a crash undo their removal, the start-up GC
    // finds them unnamed and unreferenced and removes them again.
    for (const name of this.records.namesOf(rec.id)) await this.records.removeName(name);
    await this.records.syncNames();
    await this.records.removeImage(rec.id);
    this.log.info({ id: rec.id, by: nameOrId }, 'image removed');
    addImage(this.unswept, rec);
    this.scheduleGc();
    await this.gcRunning;
  }

  /**
   * Replaces the image names `owner` pins (berth.v1.Pins/SetPins). Names are stored normalized,
   * so `busybox` and `docker.io/library/busybox:latest` are one pin.
   */
  async setPins(owner: string, references: string[]): Promise<string[]> {
    if (!/^[\x21-\x7e]{1,253}$/.test(owner)) throw invalidArgument(`pin owner ${JSON.stringify(owner)} must be 1-253 printable ASCII characters without spaces`);
    if (references.length > 4096) throw invalidArgument(`${references.length} pins for one owner; at most 4096`);
    const names = references.map((r) => {
      try {
        return canonicalName(parseReference(r));
      } catch (err) {
        throw invalidArgument(`cannot pin ${JSON.stringify(r)}: ${(err as Error).message}`);
      }
    });
    const stored = await this.pins.set(owner, names);
    this.log.info({ owner, pins: stored.length }, 'pins set');
    return stored;
  }

  listPins(owner?: string): PinSet[] {
    return this.pins.list(owner);
  }

  async fsUsage(): Promise<{ mountpoint: string; bytes: number; inodes: number }> {
    const [blobs, snaps] = await Promise.all([this.content.usage(), this.snapshots.usage()]);
    return { mountpoint: this.config.root, bytes: blobs.bytes + snaps.bytes, inodes: blobs.count + snaps.inodes };
  }

  /**
   * Sweeps what removed images and released leases held, now unless a pull is writing (a pull may
   * be about to reference those very blobs); then when the last pull ends.
   */
  private scheduleGc(): void {
    if (this.activePulls > 0 || this.gcRunning) {
      this.gcWanted = true;
      return;
    }
    this.gcWanted = false;
    const candidates = this.unswept;
    this.unswept = noCandidates();
    this.gcRunning = this.runSweep(candidates).finally(() => {
      this.gcRunning = undefined;
    });
  }

  private async runSweep(candidates: SweepCandidates): Promise<void> {
    try {
      const removed = await sweep(this.records, this.leases.all(), this.content, this.snapshots, candidates);
      if (removed.blobs + removed.snapshots > 0) this.log.info(removed, 'garbage collected');
    } catch (err) {
      // Whatever stays behind is unreferenced, so the full collection at the next start takes it.
      this.log.error({ err }, 'garbage collection failed; the next start collects what it left');
    }
  }

  private async runGc(): Promise<void> {
    try {
      const removed = await collectGarbage(this.records, this.leases.all(), this.content, this.snapshots);
      if (removed.blobs + removed.snapshots + removed.images > 0) this.log.info(removed, 'garbage collected');
    } catch (err) {
      this.log.error({ err }, 'garbage collection failed; the next start retries it');
    }
  }
}

/** The name a reference is stored and looked up under: `repo@digest` when pinned, else `repo:tag`. */
function canonicalName(ref: ImageRef): string {
  return ref.digest ? formatDigested(ref) : formatTagged(ref);
}

/** `domain/path` when `text` names a repository with neither tag nor digest; otherwise undefined. */
function bareRepository(text: string): string | undefined {
  try {
    const ref = parseReference(text, { defaultTag: false });
    return ref.tag === undefined && ref.digest === undefined ? formatName(ref) : undefined;
  } catch {
    return undefined;
  }
}

/** `1000`, `1000:1000` → uid; `www`, `www:www` → username; empty → neither (root by default). */
function splitUser(user: string): { uid?: number; username: string } {
  const first = user.split(':')[0] ?? '';
  if (first === '') return { username: '' };
  if (/^\d+$/.test(first)) return { uid: Number(first), username: '' };
  return { username: first };
}
