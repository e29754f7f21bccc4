// Test images built from scratch: layers are real tar archives (tar-stream), compressed with gzip or
// zstd, described by a real config and manifest (Docker schema 2 or OCI), and pushed to a real
// registry over the distribution HTTP API. Everything is deterministic (fixed mtimes, fixed
// timestamps, seeded pseudo-random data), so the same spec always yields the same digests.
import { createCipheriv, createHash, type Hash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createReadStream, createWriteStream, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { constants as zlibConstants, createGzip, createZstdCompress } from 'node:zlib';
import tar, { type Header, type Pack } from 'tar-stream';

export type Compression = 'gzip' | 'zstd' | 'none';
export type ImageFormat = 'docker' | 'oci';
export type FileType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

/** File content produced on demand, so large files never sit in memory whole. */
export interface StreamContent {
  size: number;
  stream: () => Readable | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;
}

export interface FileSpec {
  /** Path inside the rootfs; a leading `/` is optional. */
  path: string;
  type?: FileType;
  content?: string | Buffer | StreamContent;
  /** Permission bits incl. setuid/sticky. tar-stream treats 0 as "unset", so mode 0 can't be expressed. */
  mode?: number;
  uid?: number;
  gid?: number;
  /** Symlink target (kept verbatim) or hardlink target (a rootfs path). */
  linkname?: string;
  mtime?: Date;
  /** Extra PAX records (e.g. `SCHILY.xattr.user.foo`), written as a PAX extended header. */
  pax?: Record<string, string>;
  devmajor?: number;
  devminor?: number;
}

export interface LayerSpec {
  files: Iterable<FileSpec> | AsyncIterable<FileSpec>;
  compression?: Compression;
  /** gzip level (zlib's default, 6, when absent): 1 for big binaries where time beats size. */
  gzipLevel?: number;
}

/** A blob kept in memory or in a file on disk. */
export interface BlobSource {
  digest: string;
  size: number;
  bytes?: Buffer;
  file?: string;
}

/** A finished layer blob, held in memory (`bytes`) or in a file on disk (`file`). */
export interface BuiltLayer extends BlobSource {
  /** sha256 of the uncompressed tar: what the config's rootfs.diff_ids lists. */
  diffId: string;
  compression: Compression;
}

export interface LayerDescriptor extends BuiltLayer {
  mediaType: string;
}

export interface ImageConfigSpec {
  User?: string;
  Env?: string[];
  Cmd?: string[];
  Entrypoint?: string[];
  WorkingDir?: string;
  Labels?: Record<string, string>;
  ExposedPorts?: Record<string, object>;
  Volumes?: Record<string, object>;
  StopSignal?: string;
}

export interface ImageSpec {
  /** Layer specs are built in memory; pass BuiltLayers for big layers streamed to disk. */
  layers: Array<LayerSpec | BuiltLayer>;
  /** Env defaults to a standard PATH when omitted; pass `Env: []` for none. */
  config?: ImageConfigSpec;
  format?: ImageFormat;
  architecture?: string;
  os?: string;
  variant?: string;
  created?: string;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface HistoryEntry {
  created: string;
  created_by: string;
  empty_layer?: boolean;
}

export interface ImageConfig {
  created: string;
  architecture: string;
  os: string;
  variant?: string;
  config: ImageConfigSpec;
  rootfs: { type: 'layers'; diff_ids: string[] };
  history: HistoryEntry[];
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

/** A JSON document (config, manifest, index) with its exact bytes and digest. */
export interface BuiltBlob<T> {
  object: T;
  bytes: Buffer;
  digest: string;
  size: number;
  mediaType: string;
}

export interface Manifest {
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
}

export interface Index {
  schemaVersion: 2;
  mediaType: string;
  manifests: Descriptor[];
}

export interface BuiltImage {
  format: ImageFormat;
  config: BuiltBlob<ImageConfig>;
  manifest: BuiltBlob<Manifest>;
  layers: LayerDescriptor[];
}

export type BuiltIndex = BuiltBlob<Index>;

export const MEDIA_TYPES = {
  docker: {
    manifest: 'application/vnd.docker.distribution.manifest.v2+json',
    index: 'application/vnd.docker.distribution.manifest.list.v2+json',
    config: 'application/vnd.docker.container.image.v1+json',
    layer: { gzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip', none: 'application/vnd.docker.image.rootfs.diff.tar' },
  },
  oci: {
    manifest: 'application/vnd.oci.image.manifest.v1+json',
    index: 'application/vnd.oci.image.index.v1+json',
    config: 'application/vnd.oci.image.config.v1+json',
    layer: {
      gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
      zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
      none: 'application/vnd.oci.image.layer.v1.tar',
    },
  },
} as const;

/** Fixed so rebuilding a spec gives identical tars (and digests). */
const FIXED_MTIME = new Date('2024-01-01T00:00:00Z');
const FIXED_CREATED = '2024-01-01T00:00:00Z';
const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** `sha256:<hex>` of the bytes (a string is taken as UTF-8). */
export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

// ---------------------------------------------------------------------------------------------
// Layers

const TAR_TYPES = {
  file: 'file',
  dir: 'directory',
  symlink: 'symlink',
  hardlink: 'link',
  char: 'character-device',
  block: 'block-device',
  fifo: 'fifo',
} as const;

type TarHeader = Partial<Header> & { name: string; pax?: Record<string, string> };

function defaultMode(type: FileType): number {
  if (type === 'dir') return 0o755;
  if (type === 'symlink') return 0o777;
  return 0o644;
}

function toHeader(file: FileSpec): TarHeader {
  const type = file.type ?? 'file';
  if ((type === 'symlink' || type === 'hardlink') && !file.linkname) throw new Error(`${type} ${file.path} needs a linkname`);
  const name = file.path.replace(/^\/+/, '');
  const header: TarHeader = {
    name: type === 'dir' && !name.endsWith('/') ? `${name}/` : name,
    type: TAR_TYPES[type],
    mode: file.mode ?? defaultMode(type),
    uid: file.uid ?? 0,
    gid: file.gid ?? 0,
    mtime: file.mtime ?? FIXED_MTIME,
    devmajor: file.devmajor,
    devminor: file.devminor,
  };
  // Hardlink targets are archive member names, which carry no leading slash.
  if (file.linkname) header.linkname = type === 'hardlink' ? file.linkname.replace(/^\/+/, '') : file.linkname;
  if (file.pax) header.pax = file.pax;
  return header;
}

function isStreamContent(content: FileSpec['content']): content is StreamContent {
  return typeof content === 'object' && !Buffer.isBuffer(content);
}

/** Resolves once tar-stream has taken the whole entry; awaiting it is the pack's backpressure. */
function entryDone(pack: Pack, header: TarHeader, body?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error | null): void => (err ? reject(err) : resolve());
    if (body) pack.entry(header, body, done);
    else pack.entry(header, done);
  });
}

async function addStreamEntry(pack: Pack, header: TarHeader, content: StreamContent): Promise<void> {
  header.size = content.size;
  let settle!: (err?: Error | null) => void;
  const done = new Promise<void>((resolve, reject) => {
    settle = (err) => (err ? reject(err) : resolve());
  });
  // If the content stream throws, feedEntries destroys the pack and `done` rejects with nobody waiting.
  done.catch(() => undefined);
  const entry = pack.entry(header, (err) => settle(err));
  for await (const chunk of content.stream()) {
    if (!entry.write(chunk)) await once(entry, 'drain');
  }
  entry.end(undefined);
  await done;
}

async function addEntry(pack: Pack, file: FileSpec): Promise<void> {
  const header = toHeader(file);
  const { content } = file;
  if (isStreamContent(content)) return addStreamEntry(pack, header, content);
  if (header.type !== 'file') return entryDone(pack, header);
  // Regular files always get a body (possibly empty): tar-stream only completes a file entry once it ends.
  return entryDone(pack, header, typeof content === 'string' ? Buffer.from(content) : (content ?? Buffer.alloc(0)));
}

async function feedEntries(pack: Pack, files: LayerSpec['files']): Promise<void> {
  try {
    for await (const file of files) await addEntry(pack, file);
    pack.finalize();
  } catch (err) {
    pack.destroy(err as Error);
    throw err;
  }
}

/** A pass-through stage that hashes and counts the bytes flowing by. */
class DigestTap extends Transform {
  readonly #hash: Hash = createHash('sha256');
  bytes = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#hash.update(chunk);
    this.bytes += chunk.length;
    callback(null, chunk);
  }

  digest(): string {
    return `sha256:${this.#hash.digest('hex')}`;
  }
}

function compressor(compression: Compression, gzipLevel?: number): Transform {
  if (compression === 'gzip') return createGzip(gzipLevel === undefined ? {} : { level: gzipLevel });
  if (compression === 'zstd') return createZstdCompress({ params: { [zlibConstants.ZSTD_c_compressionLevel]: 3 } });
  return new PassThrough();
}

function memorySink(): { sink: Writable; bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk);
      callback();
    },
  });
  return { sink, bytes: () => Buffer.concat(chunks) };
}

/**
 * Tar the files, compress, and hash both sides in one streaming pass. With `outFile` the blob goes to
 * disk (memory stays flat however big the layer); without, it is returned in `bytes`.
 */
export async function buildLayer(spec: LayerSpec, outFile?: string): Promise<BuiltLayer> {
  const compression = spec.compression ?? 'gzip';
  const pack = tar.pack();
  const uncompressed = new DigestTap();
  const compressed = new DigestTap();
  const memory = outFile === undefined ? memorySink() : undefined;
  const sink = memory?.sink ?? createWriteStream(outFile ?? '');
  await Promise.all([
    feedEntries(pack, spec.files),
    pipeline(Readable.from(pack), uncompressed, compressor(compression, spec.gzipLevel), compressed, sink),
  ]);
  const layer: BuiltLayer = { digest: compressed.digest(), diffId: uncompressed.digest(), size: compressed.bytes, compression };
  if (memory) layer.bytes = memory.bytes();
  else layer.file = outFile;
  return layer;
}

/**
 * A layer that is just the given bytes, not a tar (compression 'none', so diffId = digest): for tests
 * that only move blobs through a registry, which never looks inside. Also any BlobSource for pushBlob.
 */
export function rawLayer(data: Buffer | string): BuiltLayer {
  const bytes = Buffer.from(data);
  const digest = sha256(bytes);
  return { digest, diffId: digest, size: bytes.length, compression: 'none', bytes };
}

/** The layer blob as a stream, wherever it is kept. */
export function layerStream(layer: BlobSource): Readable {
  if (layer.bytes) return Readable.from([layer.bytes]);
  if (layer.file) return createReadStream(layer.file);
  throw new Error(`layer ${layer.digest} has neither bytes nor a file`);
}

export function layerMediaType(format: ImageFormat, compression: Compression): string {
  if (format === 'oci') return MEDIA_TYPES.oci.layer[compression];
  if (compression === 'zstd') throw new Error('Docker schema 2 has no zstd layer media type; use format "oci"');
  return MEDIA_TYPES.docker.layer[compression];
}

// ---------------------------------------------------------------------------------------------
// A minimal but real base layer: static busybox with its applets, users, and the usual directories.

let busyboxBinary: Buffer | undefined;
let busyboxApplets: string[] | undefined;

function hostBusybox(): { binary: Buffer; applets: string[] } {
  busyboxBinary ??= readFileSync('/bin/busybox');
  busyboxApplets ??= execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' })
    .split('\n')
    .filter((name) => name !== '' && name !== 'busybox');
  return { binary: busyboxBinary, applets: busyboxApplets };
}

const PASSWD = [
  'root:x:0:0:root:/root:/bin/sh',
  'www:x:33:33:www:/var/www:/bin/false',
  'nobody:x:65534:65534:nobody:/nonexistent:/bin/false',
  '',
].join('\n');

// `users` lists www as a member so supplementary-group handling has something to find.
const GROUP = ['root:x:0:', 'www:x:33:', 'users:x:100:www', 'nogroup:x:65534:', ''].join('\n');

/** `/bin/busybox` from the host plus a symlink per applet, /etc/passwd+group (root, www=33, nobody=65534), /tmp 1777. */
export function busyboxLayer(): LayerSpec {
  const { binary, applets } = hostBusybox();
  const dirs: FileSpec[] = ['bin', 'dev', 'etc', 'home', 'proc', 'sys', 'usr', 'usr/bin', 'var', 'var/log'].map((path) => ({ path, type: 'dir' }));
  const files: FileSpec[] = [
    ...dirs,
    { path: 'root', type: 'dir', mode: 0o700 },
    { path: 'tmp', type: 'dir', mode: 0o1777 },
    { path: 'var/www', type: 'dir', uid: 33, gid: 33 },
    { path: 'bin/busybox', content: binary, mode: 0o755 },
    ...applets.map((name): FileSpec => ({ path: `bin/${name}`, type: 'symlink', linkname: '/bin/busybox' })),
    { path: 'usr/bin/env', type: 'symlink', linkname: '/bin/env' },
    { path: 'etc/passwd', content: PASSWD },
    { path: 'etc/group', content: GROUP },
    { path: 'etc/hostname', content: '' },
    { path: 'etc/hosts', content: '' },
    { path: 'etc/resolv.conf', content: '' },
  ];
  return { files, compression: 'gzip' };
}

/** busybox with `Cmd: ["sh"]`; `spec` overrides or adds (extra layers go on top). */
export function busyboxImage(spec: Partial<ImageSpec> = {}): Promise<BuiltImage> {
  return buildImage({ ...spec, layers: [busyboxLayer(), ...(spec.layers ?? [])], config: { Cmd: ['sh'], ...spec.config } });
}

// ---------------------------------------------------------------------------------------------
// Config, manifest, index

function jsonBlob<T>(object: T, mediaType: string): BuiltBlob<T> {
  const bytes = Buffer.from(JSON.stringify(object));
  return { object, bytes, mediaType, size: bytes.length, digest: sha256(bytes) };
}

function isBuilt(layer: LayerSpec | BuiltLayer): layer is BuiltLayer {
  return 'digest' in layer;
}

function historyFor(spec: ImageSpec, layerCount: number, created: string): HistoryEntry[] {
  const history: HistoryEntry[] = [];
  for (let i = 0; i < layerCount; i++) history.push({ created, created_by: `berth test fixture: layer ${i}` });
  // Config-only steps have no layer; consumers must skip empty_layer entries when pairing history with layers.
  const { Cmd, Entrypoint } = spec.config ?? {};
  if (Entrypoint) history.push({ created, created_by: `/bin/sh -c #(nop)  ENTRYPOINT ${JSON.stringify(Entrypoint)}`, empty_layer: true });
  if (Cmd) history.push({ created, created_by: `/bin/sh -c #(nop)  CMD ${JSON.stringify(Cmd)}`, empty_layer: true });
  return history;
}

function imageConfig(spec: ImageSpec, layers: BuiltLayer[]): ImageConfig {
  const created = spec.created ?? FIXED_CREATED;
  const config: ImageConfig = {
    created,
    architecture: spec.architecture ?? 'amd64',
    os: spec.os ?? 'linux',
    config: { Env: [DEFAULT_PATH], ...spec.config },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: historyFor(spec, layers.length, created),
  };
  if (spec.variant) config.variant = spec.variant;
  return config;
}

function descriptor(blob: { mediaType: string; digest: string; size: number }): Descriptor {
  return { mediaType: blob.mediaType, digest: blob.digest, size: blob.size };
}

/** Build (in memory) any layer specs, then the config and manifest around them. */
export async function buildImage(spec: ImageSpec): Promise<BuiltImage> {
  const format = spec.format ?? 'docker';
  const built: BuiltLayer[] = [];
  for (const layer of spec.layers) built.push(isBuilt(layer) ? layer : await buildLayer(layer));
  const layers = built.map((l): LayerDescriptor => ({ ...l, mediaType: layerMediaType(format, l.compression) }));
  const config = jsonBlob(imageConfig(spec, built), MEDIA_TYPES[format].config);
  const manifest = jsonBlob<Manifest>(
    { schemaVersion: 2, mediaType: MEDIA_TYPES[format].manifest, config: descriptor(config), layers: layers.map(descriptor) },
    MEDIA_TYPES[format].manifest,
  );
  return { format, config, manifest, layers };
}

export interface IndexEntry {
  image: BuiltImage;
  platform: Platform;
  /** e.g. `vnd.docker.reference.type: attestation-manifest`, as buildx marks attestations. */
  annotations?: Record<string, string>;
}

/** A manifest list (docker) or image index (oci) over already-built images. */
export function buildIndex(entries: IndexEntry[], format: ImageFormat = 'oci'): BuiltIndex {
  const manifests = entries.map(({ image, platform, annotations }): Descriptor => ({
    ...descriptor(image.manifest),
    platform,
    ...(annotations ? { annotations } : {}),
  }));
  return jsonBlob<Index>({ schemaVersion: 2, mediaType: MEDIA_TYPES[format].index, manifests }, MEDIA_TYPES[format].index);
}

// ---------------------------------------------------------------------------------------------
// Pushing over the distribution API

async function expectStatus(res: Response, ok: number[], what: string): Promise<void> {
  if (ok.includes(res.status)) return;
  const body = await res.text().catch(() => '');
  throw new Error(`${what}: HTTP ${res.status} ${body.slice(0, 500)}`);
}

/** Push options: `authorization` is sent as is on every request (e.g. `Basic …` for an htpasswd registry). */
export interface PushOptions {
  authorization?: string;
}

function authHeaders(opts: PushOptions): Record<string, string> {
  return opts.authorization ? { authorization: opts.authorization } : {};
}

async function blobExists(registryUrl: string, repo: string, digest: string, opts: PushOptions): Promise<boolean> {
  const res = await fetch(`${registryUrl}/v2/${repo}/blobs/${digest}`, { method: 'HEAD', headers: authHeaders(opts) });
  return res.status === 200;
}

/** Monolithic upload (POST for a session, one PUT with the bytes); skipped when the registry has the blob. */
export async function pushBlob(registryUrl: string, repo: string, blob: BlobSource, opts: PushOptions = {}): Promise<void> {
  if (await blobExists(registryUrl, repo, blob.digest, opts)) return;
  const start = await fetch(`${registryUrl}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: authHeaders(opts) });
  await expectStatus(start, [202], `starting upload of ${blob.digest} to ${repo}`);
  await start.body?.cancel();
  const location = start.headers.get('location');
  if (!location) throw new Error(`registry gave no upload location for ${blob.digest}`);
  const url = new URL(location, registryUrl);
  url.searchParams.set('digest', blob.digest);
  // Files stream straight from disk; fetch needs duplex 'half' for a streamed request body.
  const body = blob.bytes ?? (Readable.toWeb(layerStream(blob)) as ReadableStream<Uint8Array>);
  const res = await fetch(url, {
    method: 'PUT',
    body,
    duplex: 'half',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.size), ...authHeaders(opts) },
  });
  await expectStatus(res, [201], `uploading ${blob.digest} to ${repo}`);
  await res.body?.cancel();
}

async function putManifest(registryUrl: string, repo: string, reference: string, doc: BuiltBlob<unknown>, opts: PushOptions = {}): Promise<string> {
  const res = await fetch(`${registryUrl}/v2/${repo}/manifests/${reference}`, {
    method: 'PUT',
    body: doc.bytes,
    headers: { 'content-type': doc.mediaType, ...authHeaders(opts) },
  });
  await expectStatus(res, [201], `putting manifest ${repo}:${reference}`);
  await res.body?.cancel();
  const digest = res.headers.get('docker-content-digest');
  if (digest !== doc.digest) throw new Error(`registry stored ${repo}:${reference} as ${digest}, expected ${doc.digest}`);
  return digest;
}

/** Push layers, config and manifest; `reference` is a tag or the manifest digest. Returns the manifest digest. */
export async function pushImage(registryUrl: string, repo: string, reference: string, image: BuiltImage, opts: PushOptions = {}): Promise<string> {
  for (const layer of image.layers) await pushBlob(registryUrl, repo, layer, opts);
  await pushBlob(registryUrl, repo, image.config, opts);
  return putManifest(registryUrl, repo, reference, image.manifest, opts);
}

/** Push every image by digest, then the index under `tag`. */
export async function pushIndex(registryUrl: string, repo: string, tag: string, entries: IndexEntry[], format: ImageFormat = 'oci'): Promise<BuiltIndex> {
  for (const { image } of entries) await pushImage(registryUrl, repo, image.manifest.digest, image);
  const index = buildIndex(entries, format);
  await putManifest(registryUrl, repo, tag, index);
  return index;
}

// ---------------------------------------------------------------------------------------------
// The pull-benchmark image: ~100 MB compressed over 7 layers, ~10k files at scale 1.

export interface BigImageOptions {
  /** 1 ≈ 100 MB compressed and ~10k files; 0.01 is a quick test-sized version. */
  scale?: number;
  compression?: 'gzip' | 'zstd';
  format?: ImageFormat;
  /** Varies the pseudo-random content (and so every digest). */
  seed?: string;
  /** Parent directory for the layer files (default: the OS temp dir). */
  tmpDir?: string;
}

export interface BigImage extends BuiltImage {
  /** Directory holding the layer files; removed by cleanup(). */
  dir: string;
  /** Tar entries across all layers. */
  entries: number;
  cleanup(): Promise<void>;
}

interface BigLayerPlan {
  name: string;
  smallFiles: number;
  largeMiB: number[];
}

// Upper layers: many small text files (metadata-heavy unpack) plus large incompressible files (bandwidth).
const BIG_PLAN: BigLayerPlan[] = [
  { name: 'docs', smallFiles: 4000, largeMiB: [] },
  { name: 'assets', smallFiles: 1500, largeMiB: [16, 16] },
  { name: 'libs', smallFiles: 2000, largeMiB: [8, 8] },
  { name: 'data', smallFiles: 1200, largeMiB: [24] },
  { name: 'app', smallFiles: 1000, largeMiB: [12] },
  { name: 'patch', smallFiles: 300, largeMiB: [8] },
];

const WORDS = (
  'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore ' +
  'magna aliqua container runtime kubelet sandbox layer snapshot overlay digest manifest registry pull unpack ' +
  'network namespace cgroup memory cpu pod image blob config index platform'
).split(' ');

/** Text that compresses like real docs/source (a few x), generated from a cheap LCG. */
function textFile(seed: number, size: number): string {
  let state = seed >>> 0 || 1;
  const parts: string[] = [];
  let length = 0;
  while (length < size) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    const word = WORDS[state % WORDS.length] ?? 'x';
    const piece = state % 11 === 0 ? `${word} ${state % 1000}\n` : `${word} `;
    parts.push(piece);
    length += piece.length;
  }
  return parts.join('').slice(0, size);
}

/** Incompressible bytes from an AES-CTR keystream: as random-looking as randomBytes, but reproducible and fast. */
function pseudoRandom(seed: string, size: number): StreamContent {
  const CHUNK = 1 << 20;
  return {
    size,
    stream: () =>
      (function* () {
        const key = createHash('sha256').update(seed).digest();
        const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
        const zeros = Buffer.alloc(CHUNK);
        for (let left = size; left > 0; left -= CHUNK) yield cipher.update(zeros.subarray(0, Math.min(CHUNK, left)));
      })(),
  };
}

function scaled(count: number, scale: number, min: number): number {
  return Math.max(min, Math.round(count * scale));
}

/** Emit each directory entry once, before the first file beneath it, as image builders do. */
function* withParents(files: Iterable<FileSpec>): Generator<FileSpec> {
  const seen = new Set<string>();
  for (const file of files) {
    const parts = file.path.replace(/^\/+/, '').split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!seen.has(dir)) {
        seen.add(dir);
        yield { path: dir, type: 'dir' };
      }
    }
    if (file.type === 'dir') seen.add(file.path.replace(/^\/+|\/+$/g, ''));
    yield file;
  }
}

function* bigLayerFiles(plan: BigLayerPlan, index: number, scale: number, seed: string): Generator<FileSpec> {
  const small = scaled(plan.smallFiles, scale, 1);
  for (let i = 0; i < small; i++) {
    const size = 200 + ((i * 7919 + index * 104729) % 3800);
    yield { path: `usr/share/${plan.name}/d${Math.floor(i / 100)}/f${i}.txt`, content: textFile(i * 31 + index, size) };
  }
  for (const [k, mib] of plan.largeMiB.entries()) {
    const path = `opt/${plan.name}/blob${k}.bin`;
    yield { path, content: pseudoRandom(`${seed}:${path}`, scaled(mib << 20, scale, 4096)) };
  }
}

/** The top layer also deletes: a whiteout for a docs file and an opaque libs directory with fresh contents. */
function* patchExtras(): Generator<FileSpec> {
  yield { path: 'usr/share/docs/d0/.wh.f0.txt' };
  yield { path: 'usr/share/libs/d0/.wh..wh..opq' };
  yield { path: 'usr/share/libs/d0/replaced.txt', content: 'the lower d0 is hidden by the opaque marker\n' };
}

function countingFiles(files: Iterable<FileSpec>, counter: { entries: number }): Generator<FileSpec> {
  return (function* () {
    for (const file of files) {
      counter.entries++;
      yield file;
    }
  })();
}

/**
 * Generate the benchmark image: busybox base + six generated layers written as compressed files under
 * a fresh temp dir (streamed, never held in memory). Call cleanup() when done.
 */
export async function bigImage(options: BigImageOptions = {}): Promise<BigImage> {
  const { scale = 1, compression = 'gzip', seed = 'berth-big-image' } = options;
  const format = options.format ?? (compression === 'zstd' ? 'oci' : 'docker');
  const dir = await mkdtemp(join(options.tmpDir ?? tmpdir(), 'berth-big-image-'));
  const cleanup = (): Promise<void> => rm(dir, { recursive: true, force: true });
  const counter = { entries: 0 };
  const ext = compression === 'gzip' ? 'tar.gz' : 'tar.zst';
  try {
    const specs: LayerSpec[] = [
      { files: countingFiles(busyboxLayer().files as FileSpec[], counter), compression },
      ...BIG_PLAN.map((plan, i): LayerSpec => {
        const generated = bigLayerFiles(plan, i + 1, scale, seed);
        const files = plan.name === 'patch' ? [...generated, ...patchExtras()] : generated;
        return { files: countingFiles(withParents(files), counter), compression };
      }),
    ];
    // Layers build concurrently: zlib runs on the libuv pool, so this uses several cores.
    const layers = await Promise.all(specs.map((spec, i) => buildLayer(spec, join(dir, `layer-${i}.${ext}`))));
    const image = await buildImage({ layers, format, config: { Cmd: ['sh'], Labels: { 'berth.test/fixture': 'big-image', 'berth.test/scale': String(scale) } } });
    return { ...image, dir, entries: counter.entries, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
