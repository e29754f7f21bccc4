// OCI content digests. Only sha256 is accepted: it is what registries serve and what image IDs use.
import { createHash } from 'node:crypto';
import { invalidArgument } from './errors.ts';

export const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export function isDigest(value: string): boolean {
  return DIGEST_RE.test(value);
}

/** Throws INVALID_ARGUMENT unless `value` is `sha256:` + 64 lowercase hex. */
export function assertDigest(value: string, what = 'digest'): string {
  if (!DIGEST_RE.test(value)) throw invalidArgument(`${what} ${JSON.stringify(value)} is not a sha256 digest (sha256:<64 hex>)`);
  return value;
}

export function sha256(data: string | Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** The 64 hex characters of a sha256 digest, used as file names. */
export function digestHex(digest: string): string {
  return assertDigest(digest).slice('sha256:'.length);
}

/**
 * Chain IDs per the OCI image spec: chain[0] = diff[0]; chain[n] = sha256(chain[n-1] + " " + diff[n]).
 * A chain ID names a layer together with everything under it, so it keys unpacked snapshots.
 */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const diff of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? diff : sha256(`${prev} ${diff}`));
  }
  return out;
}
