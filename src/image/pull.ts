// The pull pipeline: resolve a reference to one manifest for our platform, fetch the config, then
// fetch and unpack every layer at once. Each layer is one streamed pass:
//   registry → tee(content store) → decompress → verify diff ID → untar into a snapshot
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
import type { UnpackPool } from '../snapshot/unpack-pool.ts';
import { Semaphore } from '../util/semaphore.ts';

export interface PullerDeps {
  registry: RegistryClient;
  content: ContentStore;
  snapshots: SnapshotStore;
  log: Logger;
  platform: Platform;
  maxConcurrentDownloads: number;
  /** Worker threads that decompress, verify and write layer files. */
  unpackers: UnpackPool;
}

export class Puller {
  private readonly deps: PullerDeps;
  /** Layers being fetched, by chain ID, so two pulls sharing a layer download it once. */
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly downloads: Semaphore;

  constructor(deps: PullerDeps) {
    this.deps = deps;
    this.downloads = new Semaphore(deps.maxConcurrentDownloads);
  }

  /** Fetches everything the image needs into the stores and returns its record (not yet saved). */
  async pull(ref: ImageRef, auth: PullAuth | undefined): Promise<ImageRecord> {
    const { registry, content, log } = this.deps;
    const name = formatName(ref);
    let top = await registry.getManifest(ref, manifestReference(ref), { auth });
    let indexDigest: string | undefined;
    if (isIndexMediaType(top.mediaType)) {
      await content.put(top.digest, top.bytes);
      indexDigest = top.digest;
      const chosen = selectPlatform(parseJson(top.bytes, name, 'manifest list'), this.deps.platform, name);
      top = await registry.getManifest(ref, chosen.digest, { auth });
    }
    const manifest = parseManifest(top.bytes, top.mediaType, name);
    await content.put(top.digest, top.bytes);

    const configBytes = await this.fetchSmallBlob(ref, manifest.config.digest, manifest.config.size, auth);
    const config = parseConfig(configBytes, name);
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
    // Settle every layer before answering, so a failed pull returns only after its temp files are gone.
    // Biggest layers first: with a handful of download slots and unpack workers, starting the long
    // jobs early keeps the last one from finishing alone.
    const bySize = layers.map((layer, i) => ({ layer, parent: i === 0 ? null : (chains[i - 1] as string) })).sort((a, b) => b.layer.size - a.layer.size);
    throwMostTelling(await Promise.allSettled(bySize.map(({ layer, parent }) => this.layer(ref, layer, parent, auth))));
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

  private async fetchSmallBlob(ref: ImageRef, digest: string, size: number, auth: PullAuth | undefined): Promise<Buffer> {
    const { content, registry } = this.deps;
    if (!(await content.has(digest))) await content.ingest({ digest, size }, (await registry.fetchBlob(ref, digest, { auth })).body);
    return content.readBuffer(digest);
  }

  /** Makes sure the layer's blob and its snapshot exist; shares the work with concurrent pulls. */
  private layer(ref: ImageRef, layer: LayerRecord, parent: string | null, auth: PullAuth | undefined): Promise<void> {
    const running = this.inFlight.get(layer.chainId);
    if (running) return running;
    const job = this.downloads.run(() => this.fetchLayer(ref, layer, parent, auth)).finally(() => this.inFlight.delete(layer.chainId));
    this.inFlight.set(layer.chainId, job);
    return job;
  }

  private async fetchLayer(ref: ImageRef, layer: LayerRecord, parent: string | null, auth: PullAuth | undefined): Promise<void> {
    const { content, snapshots, registry } = this.deps;
    const [haveBlob, haveSnapshot] = await Promise.all([content.has(layer.digest), snapshots.has(layer.chainId)]);
    if (haveBlob && haveSnapshot) return;
    const expected = { digest: layer.digest, size: layer.size };
    if (haveSnapshot) {
      await content.ingest(expected, (await registry.fetchBlob(ref, layer.digest, { auth })).body);
      return;
    }
    const source: Readable = haveBlob
      ? await content.createReadStream(layer.digest)
      : (await registry.fetchBlob(ref, layer.digest, { auth })).body;
    const writer = haveBlob ? undefined : content.writer(expected);
    const what = `layer ${layer.digest} of ${formatName(ref)} (uncompressed)`;
    const started = Date.now();
    try {
      const info = await snapshots.unpackWith(layer.chainId, parent, layer.diffId, {
        fill: (dir) => this.deps.unpackers.unpack(dir, source, writer ? [new Tee(writer)] : [], layer.diffId, what),
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
    }
  }
}

/** The config's User, trimmed: it decides the uid/username the CRI reports. */
function userOf(config: ImageConfig): string {
  return (config.config?.User ?? '').trim();
}
