// Manifest media types the client asks for and recognizes. Schema 1 is asked for only so that an
// image still stored that way is recognized and refused with a useful message instead of a 404.
import { failedPrecondition } from '../../util/errors.ts';

export const MediaTypes = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
} as const;

/** Accept header for manifest requests, most wanted first. */
export const MANIFEST_ACCEPT = [
  MediaTypes.ociIndex,
  MediaTypes.dockerManifestList,
  MediaTypes.ociManifest,
  MediaTypes.dockerManifest,
  `${MediaTypes.dockerSchema1Signed};q=0.5`,
  `${MediaTypes.dockerSchema1};q=0.5`,
].join(', ');

export function isIndexMediaType(mediaType: string): boolean {
  return mediaType === MediaTypes.ociIndex || mediaType === MediaTypes.dockerManifestList;
}

export function isImageManifestMediaType(mediaType: string): boolean {
  return mediaType === MediaTypes.ociManifest || mediaType === MediaTypes.dockerManifest;
}

export function isSchema1MediaType(mediaType: string): boolean {
  return mediaType === MediaTypes.dockerSchema1Signed || mediaType === MediaTypes.dockerSchema1;
}

const KNOWN = new Set<string>([
  MediaTypes.ociIndex,
  MediaTypes.ociManifest,
  MediaTypes.dockerManifestList,
  MediaTypes.dockerManifest,
  MediaTypes.dockerSchema1Signed,
  MediaTypes.dockerSchema1,
]);

/**
 * The manifest's media type: the Content-Type when it is a manifest type, otherwise read from the
 * body (registries that serve `application/json` or nothing at all). Throws if neither tells.
 */
export function detectManifestMediaType(contentType: string | undefined, bytes: Buffer, what: string): string {
  const declared = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  if (KNOWN.has(declared)) return declared;
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw failedPrecondition(`${what}: the registry served a manifest that is not JSON (Content-Type ${JSON.stringify(contentType ?? '')})`);
  }
  if (typeof doc === 'object' && doc !== null) {
    const m = doc as Record<string, unknown>;
    if (typeof m.mediaType === 'string' && KNOWN.has(m.mediaType)) return m.mediaType;
    if (m.schemaVersion === 1) return MediaTypes.dockerSchema1Signed;
    if (Array.isArray(m.manifests)) return MediaTypes.ociIndex;
    if (typeof m.config === 'object' && Array.isArray(m.layers)) return MediaTypes.ociManifest;
  }
  throw failedPrecondition(`${what}: the registry served a manifest of unknown type (Content-Type ${JSON.stringify(contentType ?? '')})`);
}
