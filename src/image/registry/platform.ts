// Picking one image manifest out of a manifest list / OCI index for the node's platform. Matching is
// on os + architecture after normalizing aliases (x86_64 → amd64, aarch64 → arm64); variants are
// matched leniently: an exact variant wins, an entry without a variant is next, and on 32-bit arm an
// older variant (v6 on a v7 host) is accepted last, since newer arm cores run older code.
import { failedPrecondition, invalidArgument, notFound } from '../../util/errors.ts';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** One entry of a manifest list / OCI index, as it appears in the JSON. */
export interface IndexEntry {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string; 'os.version'?: string };
  annotations?: Record<string, string>;
}

const ARCH_ALIASES: Record<string, { architecture: string; variant?: string }> = {
  x86_64: { architecture: 'amd64' },
  'x86-64': { architecture: 'amd64' },
  x64: { architecture: 'amd64' },
  aarch64: { architecture: 'arm64' },
  armhf: { architecture: 'arm', variant: 'v7' },
  armel: { architecture: 'arm', variant: 'v6' },
  i386: { architecture: '386' },
  i686: { architecture: '386' },
  ia32: { architecture: '386' },
};

/** Canonical form: aliases resolved, `arm64/v8` and `amd64/v1` without variant, bare `arm` as `arm/v7`. */
export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase();
  let architecture = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() || undefined;
  const alias = ARCH_ALIASES[architecture];
  if (alias !== undefined) {
    architecture = alias.architecture;
    variant ??= alias.variant;
  }
  if (architecture === 'arm64' && (variant === 'v8' || variant === '8')) variant = undefined;
  if (architecture === 'amd64' && variant === 'v1') variant = undefined;
  if (architecture === 'arm') {
    variant ??= 'v7';
    if (/^\d+$/.test(variant)) variant = `v${variant}`;
  }
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

/** `linux/amd64`, `linux/arm64/v8`, `linux/arm/v7`. */
export function parsePlatform(text: string): Platform {
  const parts = text.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((s) => s === '' || /\s/.test(s))) {
    throw invalidArgument(`platform ${JSON.stringify(text)} is not os/architecture[/variant] (e.g. linux/amd64)`);
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return normalizePlatform(variant === undefined ? { os, architecture } : { os, architecture, variant });
}

export function formatPlatform(p: Platform): string {
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
}

const NODE_ARCH: Record<string, Platform> = {
  x64: { os: 'linux', architecture: 'amd64' },
  arm64: { os: 'linux', architecture: 'arm64' },
  arm: { os: 'linux', architecture: 'arm', variant: 'v7' },
  ia32: { os: 'linux', architecture: '386' },
  ppc64: { os: 'linux', architecture: 'ppc64le' },
  s390x: { os: 'linux', architecture: 's390x' },
  riscv64: { os: 'linux', architecture: 'riscv64' },
};

/** The platform this process runs on (linux/amd64 when Node's arch has no OCI name). */
export function hostPlatform(): Platform {
  return NODE_ARCH[process.arch] ?? { os: 'linux', architecture: 'amd64' };
}

/** How well `entry` fits `want`: higher is better, 0 is no match. */
function score(entry: IndexEntry, want: Platform): number {
  if (entry.platform?.os === undefined || entry.platform.architecture === undefined) {
    // An index entry without a platform (single-platform OCI indexes) is a last resort.
    return 1;
  }
  const have = normalizePlatform({
    os: entry.platform.os,
    architecture: entry.platform.architecture,
    variant: entry.platform.variant,
  });
  if (have.os !== want.os || have.architecture !== want.architecture) return 0;
  if (have.variant === want.variant) return 100;
  if (have.variant === undefined) return 50;
  if (want.variant === undefined) return 40; // lenient: we don't know the host's variant
  if (want.architecture === 'arm') {
    const h = Number(have.variant.slice(1));
    const w = Number(want.variant.slice(1));
    if (h < w) return 10 + h; // older arm variants run on newer cores; prefer the newest of them
  }
  return 0;
}

/** True for buildx attestation manifests and other entries that are not runnable images. */
function isAttestation(entry: IndexEntry): boolean {
  return entry.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' ||
    (entry.platform?.os === 'unknown' && entry.platform.architecture === 'unknown');
}

/**
 * The best entry for `want` (first one wins a tie). Throws NOT_FOUND naming the image, the wanted
 * platform and the platforms the image does offer.
 */
export function selectManifest(entries: readonly IndexEntry[], want: Platform, imageName: string): IndexEntry {
  const target = normalizePlatform(want);
  let best: IndexEntry | undefined;
  let bestScore = 0;
  for (const entry of entries) {
    if (isAttestation(entry)) continue;
    const s = score(entry, target);
    if (s > bestScore) {
      best = entry;
      bestScore = s;
    }
  }
  if (best !== undefined) return best;
  const offered = entries
    .filter((e) => !isAttestation(e) && e.platform?.os !== undefined && e.platform.architecture !== undefined)
    .map((e) => formatPlatform({ os: e.platform?.os ?? '', architecture: e.platform?.architecture ?? '', variant: e.platform?.variant }));
  throw notFound(
    `image ${imageName} has no manifest for platform ${formatPlatform(target)}; it is available for ${offered.length > 0 ? [...new Set(offered)].join(', ') : 'no platform'}`,
  );
}

/**
 * selectManifest over a parsed manifest list / OCI index document, with the platform given as text
 * (`linux/arm64/v8`) or as a Platform.
 */
export function selectPlatform(index: unknown, platform: string | Platform, imageName: string): IndexEntry {
  const manifests = (index as { manifests?: unknown } | null)?.manifests;
  if (!Array.isArray(manifests)) throw failedPrecondition(`image ${imageName}: its manifest list has no manifests array`);
  const entries = manifests.filter(
    (m): m is IndexEntry => typeof m === 'object' && m !== null && typeof (m as IndexEntry).digest === 'string',
  );
  return selectManifest(entries, typeof platform === 'string' ? parsePlatform(platform) : platform, imageName);
}
