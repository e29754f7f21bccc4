// The pull pipeline: resolve a reference to one manifest for our platform, fetch the config, then
// fetch and unpack every layer at once. Each layer is one streamed pass:
//   registry (or a p2p peer, src/p2p/) → tee(content store) → decompress → verify diff ID → untar into a snapshot
// so nothing is buffered, the compressed blob is kept for later pushes, and layers need no parent
// to unpack (overlay whiteouts are plain char devices), which is what lets them run in parallel.
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { ContentStore } from '../content/store.ts';
import type { SnapshotStore } from '../snapshot/store.ts';
import type { RegistryClient } from './registry/client.ts';
import type { PullAuth } from './registry/config.ts';
import { selectPlatform, type Platform } from './registry/platform.ts';
import { formatName, manifestReference, type ImageRef } from './reference.ts';
import { parseConfig, parseJson, parseManifest, type ImageConfig } from './manifest.ts';
import { isIndexMediaType } from './registry/media-types.ts';
import type { ImageRecord, LayerRecord } from './records.ts';
import { chainIds } from '../util/digest.ts';
import { BerthError, throwMostTelling } from '../util/errors.ts';
import { Tee } from '../snapshot/layer-stream.ts';
import { INLINE_MAX, type UnpackPool } from '../snapshot/unpack-pool.ts';
import { Semaphore } from '../util/semaphore.ts';
import { SharedWork } from '../util/shared-work.ts';
import { errorMessage } from '../util/errors.ts';
import type { PeerFetcher } from '../p2p/fetch.ts';

export interface PullerDeps {
  registry: RegistryClient;
  content: ContentStore;
  snapshots: SnapshotStore;
  log: Logger;
  platform: Platform;
  maxConcurrentDownloads: number;
  /** Worker threads that decompress, verify and write layer files. */
  unpackers: UnpackPool;
  /**
   * Other nodes asked first for blobs (p2p on); absent: the registry only. Manifests always come
   * from the registry: fetching them is where it checks this node's credentials for the image.
   */
  peers?: PeerFetcher;
}

export class Puller {
  private readonly deps: PullerDeps;
  /**
   * Unpacks by chain ID and blob downloads by blob digest, each shared with concurrent pulls. Two
   * images whose layers differ only in compression share one snapshot but need both blobs.
   */
  private readonly unpacks = new SharedWork<void>();
  private readonly blobs = new SharedWork<void>();
  /** The blob a running unpack streams from (and stores on the way), by chain ID. */
  private readonly unpackSource = new Map<string, string>();
  private readonly downloads: Semaphore;

  constructor(deps: PullerDeps) {
    this.deps = deps;
    this.downloads = new Semaphore(deps.maxConcurrentDownloads);
  }

  /**
   * Fetches everything the image needs into the stores and returns its record (not yet saved).
   * `signal` aborts the pull; layer work other pulls still wait for goes on without it.
   */
  async pull(ref: ImageRef, auth: PullAuth | undefined, signal?: AbortSignal): Promise<ImageRecord> {
    const { registry, content, log } = this.deps;
    const name = formatName(ref);
    let top = await registry.getManifest(ref, manifestReference(ref), { auth, signal });
    let indexDigest: string | undefined;
    if (isIndexMediaType(top.mediaType)) {
      await content.put(top.digest, top.bytes);
      indexDigest = top.digest;
      const chosen = selectPlatform(parseJson(top.bytes, name, 'manifest list'), this.deps.platform, name);
      top = await registry.getManifest(ref, chosen.digest, { auth, signal });
    }
    const manifest = parseManifest(top.bytes, top.mediaType, name);
    await content.put(top.digest, top.bytes);

    const configBytes = await this.fetchSmallBlob(ref, manifest.config.digest, manifest.config.size, auth, signal);
    const config = parseConfig(configBytes, name);
    signal?.throwIfAborted();
    log.debug({ image: name, manifest: top.digest }, 'manifest and config fetched');
    const diffIds = config.rootfs.diff_ids;
    if (diffIds.length !== manifest.layers.length) {
      throw new BerthError('invalid-argument', `${name}: manifest has ${manifest.layers.length} layers but the config lists ${diffIds.length} diff IDs`);
    }
    const chains = chainIds(diffIds);
    const layers: LayerRecord[] = manifest.layers.map((l, i) => ({
      digest: l.digest,
      mediaType: l.mediaType,
      size: l.size,
      diffId: diffIds[i] as string,
      chainId: chains[i] as string,
    }));
    const started = Date.now();
    const big = await Promise.all(layers.map(async (l) => l.size > INLINE_MAX && !(await this.deps.snapshots.has(l.chainId))));
    this.deps.unpackers.prestart(big.filter(Boolean).length);
    // Settle every layer before answering, so a failed pull returns only after its temp files are gone.
    // Biggest layers first: with a handful of download slots and unpack workers, starting the long
    // jobs early keeps the last one from finishing alone.
    const bySize = layers.map((layer, i) => ({ layer, parent: i === 0 ? null : (chains[i - 1] as string) })).sort((a, b) => b.layer.size - a.layer.size);
    throwMostTelling(await Promise.allSettled(bySize.map(({ layer, parent }) => this.layer(ref, layer, parent, auth, signal))));
    // Layers unpacked side by side; now that all exist, directories a layer made only as parents
    // take their metadata from the layers below.
    await this.deps.snapshots.inheritParentDirs(chains);
    log.debug({ image: name, layers: layers.length, ms: Date.now() - started }, 'layers ready');

    return {
      id: manifest.config.digest,
      manifestDigest: top.digest,
      manifestMediaType: top.mediaType,
      ...(indexDigest ? { indexDigest } : {}),
      configDigest: manifest.config.digest,
      configSize: manifest.config.size,
      layers,
      user: userOf(config),
      createdAt: new Date().toISOString(),
    };
  }

  /**
   * The one place blob bytes come from: `consume` reads them and verifies them (digest, size, diff
   * ID) as it stores them. With p2p on, a peer is tried first; if the peer fails or its bytes do not
   * verify, whatever `consume` left behind is already cleaned up and it runs again on the registry's bytes.
   */
  private async fromSources(ref: ImageRef, blob: { digest: string; size: number }, auth: PullAuth | undefined, signal: AbortSignal | undefined, consume: (body: Readable) => Promise<void>): Promise<void> {
    const { peers, registry, log } = this.deps;
    if (peers?.hasPeers) {
      const got = await peers.blob(ref.path, blob.digest, blob.size, signal);
      if (got) {
        try {
          await consume(got.body);
          log.debug({ blob: blob.digest, peer: got.peer }, 'p2p: blob fetched from a peer');
          return;
        } catch (err) {
          got.body.destroy();
          if (signal?.aborted) throw err;
          log.debug({ blob: blob.digest, peer: got.peer, err: errorMessage(err) }, 'p2p: blob from a peer failed; fetching it from the registry');
        }
      }
    }
    await consume((await registry.fetchBlob(ref, blob.digest, { auth, signal })).body);
  }

  private async fetchSmallBlob(ref: ImageRef, digest: string, size: number, auth: PullAuth | undefined, signal: AbortSignal | undefined): Promise<Buffer> {
    const { content } = this.deps;
    if (!(await content.has(digest))) await this.fromSources(ref, { digest, size }, auth, signal, async (body) => void (await content.ingest({ digest, size }, body)));
    return content.readBuffer(digest);
  }

  /** Makes sure the layer's blob and its snapshot exist; shares the work with concurrent pulls. */
  private layer(ref: ImageRef, layer: LayerRecord, parent: string | null, auth: PullAuth | undefined, signal: AbortSignal | undefined): Promise<void> {
    if (!this.unpacks.has(layer.chainId)) this.unpackSource.set(layer.chainId, layer.digest);
    const unpack = this.unpacks.run(layer.chainId, signal, (s) => this.downloads.run(() => this.unpackLayer(ref, layer, parent, auth, s), s));
    // The unpack stores the blob it streams; a chain made from another blob needs ours fetched too.
    if (this.unpackSource.get(layer.chainId) === layer.digest) return unpack;
    const blob = this.blobs.run(layer.digest, signal, (s) => this.downloads.run(() => this.storeBlob(ref, layer, auth, s), s));
    return Promise.all([unpack, blob]).then(() => undefined);
  }

  private async storeBlob(ref: ImageRef, layer: LayerRecord, auth: PullAuth | undefined, signal: AbortSignal): Promise<void> {
    const { content } = this.deps;
    if (await content.has(layer.digest)) return;
    const expected = { digest: layer.digest, size: layer.size };
    await this.fromSources(ref, expected, auth, signal, async (body) => void (await content.ingest(expected, body)));
  }

  private async unpackLayer(ref: ImageRef, layer: LayerRecord, parent: string | null, auth: PullAuth | undefined, signal: AbortSignal): Promise<void> {
    try {
      await this.fetchLayer(ref, layer, parent, auth, signal);
    } finally {
      if (this.unpackSource.get(layer.chainId) === layer.digest) this.unpackSource.delete(layer.chainId);
    }
  }

  private async fetchLayer(ref: ImageRef, layer: LayerRecord, parent: string | null, auth: PullAuth | undefined, signal: AbortSignal): Promise<void> {
    const { content, snapshots } = this.deps;
    const [haveBlob, haveSnapshot] = await Promise.all([content.has(layer.digest), snapshots.has(layer.chainId)]);
    if (haveBlob && haveSnapshot) return;
    const expected = { digest: layer.digest, size: layer.size };
    if (haveSnapshot) {
      await this.fromSources(ref, expected, auth, signal, async (body) => void (await content.ingest(expected, body)));
      return;
    }
    if (haveBlob) await this.unpackFrom(ref, layer, parent, await content.createReadStream(layer.digest), false, signal);
    else await this.fromSources(ref, expected, auth, signal, (body) => this.unpackFrom(ref, layer, parent, body, true, signal));
  }

  /** Unpacks the layer from `source`, storing the blob on the way when `store` (it was fetched). */
  private async unpackFrom(ref: ImageRef, layer: LayerRecord, parent: string | null, source: Readable, store: boolean, signal: AbortSignal): Promise<void> {
    const { content, snapshots } = this.deps;
    // Whoever reads `source` reports its errors; until then (the snapshot's temp dir is being made)
    // this keeps a cancel below from being an uncaught exception that ends the daemon.
    source.on('error', () => undefined);
    // Every pull that wanted this layer has gone: stop reading, which fails the unpack and cleans up.
    const stop = (): void => {
      source.destroy(signal.reason instanceof Error ? signal.reason : new BerthError('cancelled', 'layer no longer wanted'));
    };
    signal.addEventListener('abort', stop, { once: true });
    if (signal.aborted) stop();
    const writer = store ? content.writer({ digest: layer.digest, size: layer.size }) : undefined;
    const what = `layer ${layer.digest} of ${formatName(ref)} (uncompressed)`;
    const started = Date.now();
    try {
      const info = await snapshots.unpackWith(layer.chainId, parent, layer.diffId, {
        fill: (dir) => this.deps.unpackers.unpack(dir, source, writer ? [new Tee(writer)] : [], layer.diffId, what, layer.size),
        // Another pull made the snapshot meanwhile: keep the blob, if we were fetching it.
        skip: async () => {
          if (writer) await pipeline(source, writer);
          else source.destroy();
        },
        cancel: () => source.destroy(),
      });
      if (writer) await writer.commit();
      this.deps.log.debug({ layer: layer.digest, bytes: layer.size, unpacked: info.size, inodes: info.inodes, ms: Date.now() - started }, 'layer ready');
    } catch (err) {
      if (writer) await writer.abort();
      throw err;
    } finally {
      signal.removeEventListener('abort', stop);
    }
  }
}

/** The config's User, trimmed: it decides the uid/username the CRI reports. */
function userOf(config: ImageConfig): string {
  return (config.config?.User ?? '').trim();
}
