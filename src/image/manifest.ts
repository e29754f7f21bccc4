// Image manifests and configs: the media types berth understands and checked parsing, so a
// malformed document fails with a message naming the image instead of a TypeError deep in a pull.
import { BerthError } from '../util/errors.ts';
import { isDigest } from '../util/digest.ts';
import { isImageManifestMediaType } from './registry/media-types.ts';

/** Layer media types berth can unpack; compression is detected from the bytes themselves. */
const LAYER_TYPES = new Set([
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
  'application/vnd.docker.image.rootfs.diff.tar',
  'application/vnd.oci.image.layer.v1.tar',
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd',
]);

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export interface Manifest {
  config: Descriptor;
  layers: Descriptor[];
}

/** The parts of an image config berth reads (the OCI image config / Docker container config). */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  config?: {
    User?: string;
    Env?: string[];
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    WorkingDir?: string;
    Labels?: Record<string, string> | null;
    ExposedPorts?: Record<string, object> | null;
    Volumes?: Record<string, object> | null;
    StopSignal?: string;
  };
  rootfs: { type: string; diff_ids: string[] };
}

function invalid(image: string, what: string): BerthError {
  return new BerthError('invalid-argument', `image ${image}: ${what}`);
}

/** A JSON object out of registry bytes, or INVALID_ARGUMENT naming the image and the document. */
export function parseJson(bytes: Buffer, image: string, what: string): Record<string, unknown> {
  try {
    const doc: unknown = JSON.parse(bytes.toString('utf8'));
    if (typeof doc === 'object' && doc !== null && !Array.isArray(doc)) return doc as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw invalid(image, `${what} is not a JSON object`);
}

function descriptor(value: unknown, image: string, what: string): Descriptor {
  const d = value as Partial<Descriptor> | null;
  if (!d || typeof d.digest !== 'string' || !isDigest(d.digest) || typeof d.size !== 'number' || d.size < 0) {
    throw invalid(image, `${what} has no valid sha256 digest and size`);
  }
  return { mediaType: typeof d.mediaType === 'string' ? d.mediaType : '', digest: d.digest, size: d.size };
}

export function parseManifest(bytes: Buffer, mediaType: string, image: string): Manifest {
  if (!isImageManifestMediaType(mediaType)) {
    throw invalid(image, `unsupported manifest media type ${mediaType}`);
  }
  const doc = parseJson(bytes, image, 'manifest');
  const config = descriptor(doc.config, image, 'manifest config');
  if (!Array.isArray(doc.layers)) throw invalid(image, 'manifest has no layers array');
  const layers = doc.layers.map((l, i) => descriptor(l, image, `layer ${i}`));
  for (const layer of layers) {
    if (!LAYER_TYPES.has(layer.mediaType)) {
      throw invalid(image, `layer ${layer.digest} has media type ${layer.mediaType || '(none)'}, which berth cannot unpack`);
    }
  }
  return { config, layers };
}

export function parseConfig(bytes: Buffer, image: string): ImageConfig {
  const doc = parseJson(bytes, image, 'config') as unknown as ImageConfig;
  const diffIds = doc.rootfs?.diff_ids;
  if (!Array.isArray(diffIds) || diffIds.some((d) => typeof d !== 'string' || !isDigest(d))) {
    throw invalid(image, 'config has no valid rootfs.diff_ids');
  }
  return doc;
}
