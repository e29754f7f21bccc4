// A tiny pusher for tests: puts blobs and manifests into a real registry over plain HTTP with the
// distribution API's monolithic upload (POST an upload, PUT the bytes with ?digest=), so client tests
// can pull known content back. Not a client feature: the registry client is pull-only for now.
import { createHash } from 'node:crypto';

export interface PushTarget {
  /** `http://127.0.0.1:PORT` */
  url: string;
  username?: string;
  password?: string;
}

export interface PushedDescriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

function headers(target: PushTarget, extra: Record<string, string> = {}): Record<string, string> {
  const h = { ...extra };
  if (target.username !== undefined) {
    h.authorization = `Basic ${Buffer.from(`${target.username}:${target.password ?? ''}`).toString('base64')}`;
  }
  return h;
}

async function expectStatus(res: Response, want: number, what: string): Promise<void> {
  if (res.status !== want) throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
}

/** Uploads one blob; returns its digest and size. */
export async function pushBlob(target: PushTarget, repo: string, data: Buffer | string, mediaType = 'application/octet-stream'): Promise<PushedDescriptor> {
  const bytes = Buffer.from(data);
  const digest = sha256(bytes);
  const start = await fetch(`${target.url}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: headers(target) });
  await expectStatus(start, 202, `start upload to ${repo}`);
  await start.body?.cancel();
  const location = new URL(start.headers.get('location') ?? '', target.url);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, {
    method: 'PUT',
    headers: headers(target, { 'content-type': 'application/octet-stream' }),
    body: bytes,
  });
  await expectStatus(put, 201, `upload blob ${digest} to ${repo}`);
  await put.body?.cancel();
  return { mediaType, digest, size: bytes.length };
}

/** Puts a manifest (any media type) under a tag or its digest; returns its descriptor. */
export async function pushManifest(target: PushTarget, repo: string, reference: string, mediaType: string, body: Buffer | string | object): Promise<PushedDescriptor> {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  const res = await fetch(`${target.url}/v2/${repo}/manifests/${reference}`, {
    method: 'PUT',
    headers: headers(target, { 'content-type': mediaType }),
    body: bytes,
  });
  await expectStatus(res, 201, `put manifest ${repo}:${reference}`);
  await res.body?.cancel();
  return { mediaType, digest: sha256(bytes), size: bytes.length };
}

export interface PushedImage {
  manifest: PushedDescriptor;
  manifestBytes: Buffer;
  config: PushedDescriptor;
  layers: PushedDescriptor[];
}

/**
 * Pushes a single-platform image: the given layer bytes (any content; the registry doesn't look
 * inside) and a config naming the platform, under `tag`.
 */
export async function pushImage(
  target: PushTarget,
  repo: string,
  tag: string,
  opts: { layers: Array<Buffer | string>; os?: string; architecture?: string; variant?: string; format?: 'oci' | 'docker' },
): Promise<PushedImage> {
  const docker = opts.format === 'docker';
  const layers: PushedDescriptor[] = [];
  for (const layer of opts.layers) {
    layers.push(await pushBlob(target, repo, layer, docker ? 'application/vnd.docker.image.rootfs.diff.tar.gzip' : OCI_LAYER_GZIP));
  }
  const configDoc = {
    architecture: opts.architecture ?? 'amd64',
    os: opts.os ?? 'linux',
    ...(opts.variant ? { variant: opts.variant } : {}),
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
    config: {},
  };
  const config = await pushBlob(target, repo, JSON.stringify(configDoc), docker ? DOCKER_CONFIG : OCI_CONFIG);
  const mediaType = docker ? DOCKER_MANIFEST : OCI_MANIFEST;
  const manifestBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, config, layers }));
  const manifest = await pushManifest(target, repo, tag, mediaType, manifestBytes);
  return { manifest, manifestBytes, config, layers };
}

/** Pushes a manifest list / OCI index over already-pushed manifests, under `tag`. */
export async function pushIndex(
  target: PushTarget,
  repo: string,
  tag: string,
  entries: Array<{ manifest: PushedDescriptor; platform: { os: string; architecture: string; variant?: string }; annotations?: Record<string, string> }>,
  format: 'oci' | 'docker' = 'oci',
): Promise<PushedDescriptor> {
  const mediaType = format === 'docker' ? DOCKER_MANIFEST_LIST : OCI_INDEX;
  const doc = {
    schemaVersion: 2,
    mediaType,
    manifests: entries.map((e) => ({ ...e.manifest, platform: e.platform, ...(e.annotations ? { annotations: e.annotations } : {}) })),
  };
  return pushManifest(target, repo, tag, mediaType, doc);
}
