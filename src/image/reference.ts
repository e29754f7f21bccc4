// Image references, parsed and normalized the way Docker and containerd do it, so that the names
// the kubelet sends (`busybox`, `registry.k8s.io/pause:3.9`, `name@sha256:…`) map to the same
// canonical `domain/path[:tag][@digest]` those runtimes would store and report.
//
// Grammar (distribution's reference grammar):
//   reference  := name [ ":" tag ] [ "@" digest ]
//   name       := [ domain "/" ] component ( "/" component )*
//   domain     := host [ ":" port ]          host := dns-name | "[" ipv6 "]"
//   component  := [a-z0-9]+ ( separator [a-z0-9]+ )*     separator := [._] | "__" | "-"+
//   tag        := [\w][\w.-]{0,127}
import { invalidArgument } from '../util/errors.ts';
import { isDigest } from '../util/digest.ts';

export interface ImageRef {
  /** Registry host, with port if any: `docker.io`, `localhost:5000`, `[::1]:5000`. */
  domain: string;
  /** Repository path inside the registry: `library/busybox`. */
  path: string;
  /** Tag, when the reference names one (defaulted to `latest` when neither tag nor digest is given). */
  tag?: string;
  /** `sha256:<64 hex>` when the reference pins content; pulls go by digest when it is set. */
  digest?: string;
}

export interface ParseOptions {
  /** Add `latest` when the reference has neither tag nor digest (default true). */
  defaultTag?: boolean;
}

export const DOCKER_DOMAIN = 'docker.io';
const LEGACY_DOCKER_DOMAIN = 'index.docker.io';
const OFFICIAL_PREFIX = 'library/';
const DEFAULT_TAG = 'latest';
/** Longest repository name (domain + path) distribution accepts. */
const NAME_MAX = 255;

const COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^\w[\w.-]{0,127}$/;
const DNS_LABEL = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN_RE = new RegExp(`^(?:${DNS_LABEL}(?:\\.${DNS_LABEL})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`);
/** Any algorithm:hex digest, so we can say "only sha256" instead of "malformed" for sha512 ones. */
const ANY_DIGEST_RE = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
const IMAGE_ID_RE = /^[a-f0-9]{64}$/;

function bad(input: string, why: string): Error {
  return invalidArgument(`invalid image reference ${JSON.stringify(input)}: ${why}`);
}

/**
 * Parses and normalizes an image reference. Throws INVALID_ARGUMENT naming the reference and the
 * rule it breaks.
 */
export function parseReference(input: string, options: ParseOptions = {}): ImageRef {
  if (input === '') throw bad(input, 'it is empty');
  if (input.trim() !== input) throw bad(input, 'it has leading or trailing whitespace');
  if (IMAGE_ID_RE.test(input)) {
    throw bad(input, 'a bare 64-hex string is an image ID, not a name; use name@sha256:<hex> to pin content');
  }

  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (isDigest(digest)) {
      // valid
    } else if (ANY_DIGEST_RE.test(digest)) {
      throw bad(input, `digest ${digest} is not supported: only sha256:<64 lowercase hex> digests are`);
    } else {
      throw bad(input, `digest ${JSON.stringify(digest)} is malformed (want sha256:<64 hex>)`);
    }
  }

  // A colon after the last slash starts the tag; earlier colons belong to the domain's port.
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/') && !rest.slice(colon).includes(']')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) {
      throw bad(input, `tag ${JSON.stringify(tag)} is invalid (letters, digits, _ . - only, must not start with . or -, at most 128 characters)`);
    }
  }
  if (rest === '') throw bad(input, 'the repository name is empty');

  const { domain, path } = splitDomain(input, rest);
  if (path !== path.toLowerCase()) throw bad(input, 'the repository name must be lowercase');
  for (const component of path.split('/')) {
    if (component === '') throw bad(input, 'the repository path has an empty component');
    if (!COMPONENT_RE.test(component)) {
      throw bad(input, `path component ${JSON.stringify(component)} is invalid (lowercase letters and digits, separated by . _ __ or dashes)`);
    }
  }
  if (domain.length + 1 + path.length > NAME_MAX) throw bad(input, `the repository name is longer than ${NAME_MAX} characters`);

  const ref: ImageRef = { domain, path };
  if (tag !== undefined) ref.tag = tag;
  else if (digest === undefined && options.defaultTag !== false) ref.tag = DEFAULT_TAG;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/**
 * Docker's rule: the first component is a registry domain only if it looks like one (has `.` or
 * `:`, is `localhost`, or has uppercase letters, which repository paths never do); otherwise the
 * name lives on Docker Hub, and a single-component Hub name is an official `library/` image.
 */
function splitDomain(input: string, name: string): { domain: string; path: string } {
  const slash = name.indexOf('/');
  let domain = DOCKER_DOMAIN;
  let path = name;
  if (slash >= 0) {
    const first = name.slice(0, slash);
    if (/[.:]/.test(first) || first === 'localhost' || first.startsWith('[') || first !== first.toLowerCase()) {
      if (!DOMAIN_RE.test(first)) throw bad(input, `registry domain ${JSON.stringify(first)} is invalid`);
      domain = first;
      path = name.slice(slash + 1);
    }
  }
  if (domain === LEGACY_DOCKER_DOMAIN) domain = DOCKER_DOMAIN;
  if (domain === DOCKER_DOMAIN && !path.includes('/')) path = OFFICIAL_PREFIX + path;
  return { domain, path };
}

/** `domain/path`: the repository, as used in RepoDigests and registry scopes. */
export function formatName(ref: ImageRef): string {
  return `${ref.domain}/${ref.path}`;
}

/** `domain/path:tag`. Throws if the reference has no tag. */
export function formatTagged(ref: ImageRef): string {
  if (ref.tag === undefined) throw invalidArgument(`image reference ${refString(ref)} has no tag`);
  return `${formatName(ref)}:${ref.tag}`;
}

/** `domain/path@digest`. Throws if the reference has no digest. */
export function formatDigested(ref: ImageRef): string {
  if (ref.digest === undefined) throw invalidArgument(`image reference ${refString(ref)} has no digest`);
  return `${formatName(ref)}@${ref.digest}`;
}

/** Canonical string: `domain/path[:tag][@digest]`. */
export function refString(ref: ImageRef): string {
  let s = formatName(ref);
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** What to ask the registry for: the digest when pinned (content cannot change), else the tag. */
export function manifestReference(ref: ImageRef): string {
  return ref.digest ?? ref.tag ?? DEFAULT_TAG;
}
