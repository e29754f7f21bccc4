// The pull side of the OCI distribution API: manifests and blobs, from the configured mirrors in
// order and then the upstream registry. Per endpoint a request is retried on transient failures and
// re-sent once after an auth challenge; a mirror that fails in any way hands over to the next
// endpoint, and only the last endpoint's failure (or "all unreachable") reaches the caller.
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { BerthError, errorMessage, failedPrecondition, invalidArgument, notFound, permissionDenied, unauthenticated, unavailable } from '../../util/errors.ts';
import { assertDigest, isDigest, sha256 } from '../../util/digest.ts';
import { formatName, manifestReference, refString, type ImageRef } from '../reference.ts';
import { Authorizer, challengesOf, credentialsFor, type Credentials } from './auth.ts';
import { defaultRegistryConfig, type PullAuth, type RegistryConfig } from './config.ts';
import { endpointLabel, isPlainHttpAllowed, resolveEndpoints, type Endpoint, type TlsSettings } from './hosts.ts';
import { BodyTooLargeError, discard, HttpTransport, readBody, readErrorBody } from './http.ts';
import { detectManifestMediaType, isSchema1MediaType, MANIFEST_ACCEPT } from './media-types.ts';
import { backoffDelay, DEFAULT_RETRY, errorCode, isAbortError, isRetryableNetworkError, isRetryableStatus, parseRetryAfter, type RetryPolicy } from './retry.ts';

/** Minimal logger shape (pino's). */
export interface RegistryLogger {
  debug(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

export interface RegistryClientOptions {
  config?: RegistryConfig;
  retry?: Partial<RetryPolicy>;
  /** Longest silence while connecting / awaiting response headers (default 30 s). */
  timeoutMs?: number;
  /** Longest silence while a body streams (default 120 s: a busy disk may pause the reader). */
  bodyIdleTimeoutMs?: number;
  logger?: RegistryLogger;
  /**
   * After an endpoint that is not the last one fails as unavailable, skip it for this long (default
   * 30 s), so a dead mirror costs one round of retries, not one per blob of every pull.
   */
  endpointCooldownMs?: number;
}

export interface RequestOptions {
  /** The kubelet's credentials for this pull (CRI AuthConfig). */
  auth?: PullAuth;
  signal?: AbortSignal;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export interface FetchedManifest extends Descriptor {
  bytes: Buffer;
}

export interface BlobResponse {
  /** The blob's bytes, streamed from the registry. Digest checking is the reader's job. */
  body: Readable;
  /** Total blob size when the server said it. */
  size?: number;
  /** Base URL of the endpoint that served it. */
  endpoint: string;
}

/** Manifests bigger than this are refused (containerd's limit too); real ones are a few KiB. */
const MAX_MANIFEST_BYTES = 4 << 20;
const MAX_REDIRECTS = 5;

interface Exchange {
  method: 'GET' | 'HEAD';
  path: string;
  headers: Record<string, string>;
}

export class RegistryClient {
  readonly #config: RegistryConfig;
  readonly #retry: RetryPolicy;
  readonly #timeoutMs: number;
  readonly #bodyIdleTimeoutMs: number;
  readonly #logger: RegistryLogger | undefined;
  readonly #auth: Authorizer;
  readonly #http = new HttpTransport();
  readonly #cooldownMs: number;
  /** Endpoint base URL → time until which it is skipped. */
  readonly #downUntil = new Map<string, number>();

  constructor(options: RegistryClientOptions = {}) {
    this.#config = options.config ?? defaultRegistryConfig();
    this.#retry = { ...DEFAULT_RETRY, ...options.retry };
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#bodyIdleTimeoutMs = options.bodyIdleTimeoutMs ?? 120_000;
    this.#logger = options.logger;
    this.#cooldownMs = options.endpointCooldownMs ?? 30_000;
    this.#auth = new Authorizer({
      request: (req) => this.#sendWithRetry(req),
      plainHttpAllowed: (host) => isPlainHttpAllowed(host, this.#config),
    });
  }

  /** Drops the client's connections. */
  close(): void {
    this.#http.close();
  }

  /**
   * The manifest named by `reference` (a tag or a digest) in `ref`'s repository. Schema 1 manifests
   * are refused; when `reference` is a digest the bytes are checked against it.
   */
  async getManifest(ref: ImageRef, reference: string = manifestReference(ref), options: RequestOptions = {}): Promise<FetchedManifest> {
    return this.#acrossEndpoints(ref, `fetch manifest ${reference} of ${formatName(ref)}`, options, (ep, creds) =>
      this.#manifestFrom(ep, ref, reference, creds, options.signal),
    );
  }

  /**
   * Streams blob `digest` of `ref`'s repository, following redirects to storage. The answer says
   * the total size and which endpoint served it.
   */
  async fetchBlob(ref: ImageRef, digest: string, options: RequestOptions = {}): Promise<BlobResponse> {
    assertDigest(digest, 'blob digest');
    return this.#acrossEndpoints(ref, `fetch blob ${digest} of ${formatName(ref)}`, options, async (ep, creds) => {
      const res = await this.#exchange(ep, ref, creds, { method: 'GET', path: `/v2/${ref.path}/blobs/${digest}`, headers: {} }, options.signal);
      if (res.statusCode === 200) {
        const length = Number(header(res, 'content-length'));
        return { body: res, size: Number.isInteger(length) ? length : undefined, endpoint: ep.base };
      }
      throw await this.#statusError(ep, ref, res, `blob ${digest}`);
    });
  }

  #manifestExchange(ref: ImageRef, reference: string, method: 'GET' | 'HEAD'): Exchange {
    return { method, path: `/v2/${ref.path}/manifests/${reference}`, headers: { accept: MANIFEST_ACCEPT } };
  }

  async #manifestFrom(ep: Endpoint, ref: ImageRef, reference: string, creds: Credentials | undefined, signal: AbortSignal | undefined): Promise<FetchedManifest> {
    const res = await this.#exchange(ep, ref, creds, this.#manifestExchange(ref, reference, 'GET'), signal);
    if (res.statusCode !== 200) throw await this.#statusError(ep, ref, res, 'manifest');
    let bytes: Buffer;
    try {
      bytes = await readBody(res, MAX_MANIFEST_BYTES);
    } catch (err) {
      if (err instanceof BodyTooLargeError) {
        throw failedPrecondition(`${endpointLabel(ep)} served a manifest for ${refString(ref)} larger than ${MAX_MANIFEST_BYTES} bytes; refusing it`);
      }
      throw err;
    }
    const mediaType = detectManifestMediaType(header(res, 'content-type'), bytes, `image ${refString(ref)}`);
    if (isSchema1MediaType(mediaType)) throw schema1Error(ref);
    const digest = sha256(bytes);
    if (isDigest(reference)) {
      if (digest !== reference) throw digestMismatch(ep, ref, reference, digest);
    } else {
      const claimed = header(res, 'docker-content-digest');
      if (claimed !== undefined && isDigest(claimed) && claimed !== digest) throw digestMismatch(ep, ref, claimed, digest);
    }
    return { mediaType, digest, size: bytes.length, bytes };
  }

  /** Runs `op` on each endpoint in order until one succeeds. */
  async #acrossEndpoints<T>(
    ref: ImageRef,
    what: string,
    options: RequestOptions,
    op: (ep: Endpoint, creds: Credentials | undefined) => Promise<T>,
  ): Promise<T> {
    const endpoints = resolveEndpoints(ref.domain, this.#config);
    const failures: Array<{ ep: Endpoint; err: unknown }> = [];
    for (const [i, ep] of endpoints.entries()) {
      const isLast = i === endpoints.length - 1;
      const downUntil = this.#downUntil.get(ep.base) ?? 0;
      if (!isLast && downUntil > Date.now()) {
        failures.push({ ep, err: unavailable(`${endpointLabel(ep)} skipped: it failed within the last ${Math.round(this.#cooldownMs / 1000)}s`) });
        continue;
      }
      try {
        const result = await op(ep, credentialsFor(ep, options.auth));
        if (downUntil !== 0) this.#downUntil.delete(ep.base);
        return result;
      } catch (err) {
        if (isAbortError(err) || options.signal?.aborted) throw err;
        failures.push({ ep, err });
        if (!isLast && err instanceof BerthError && err.kind === 'unavailable') this.#downUntil.set(ep.base, Date.now() + this.#cooldownMs);
        if (!isLast) {
          this.#logger?.warn({ endpoint: ep.base, err: errorMessage(err) }, `registry: ${what} failed on ${endpointLabel(ep)}; trying the next endpoint`);
        }
      }
    }
    const last = failures[failures.length - 1]?.err;
    if (last instanceof BerthError && last.kind !== 'unavailable') throw last;
    // Each failure's message names its endpoint (origin or label), so the list reads on its own.
    const tried = failures.map((f) => errorMessage(f.err)).join('; ');
    // An air-gapped node's usual case: the mirror says "no such image" and the upstream cannot be
    // reached. The only answer anyone gave is "not found", so lead with it.
    const missing = failures.find((f) => f.err instanceof BerthError && f.err.kind === 'not-found');
    const othersDown = failures.every((f) => f === missing || (f.err instanceof BerthError && f.err.kind === 'unavailable'));
    if (missing && othersDown) throw notFound(`cannot ${what}: not found on any reachable endpoint: ${tried}`);
    throw unavailable(`cannot ${what}: registry ${ref.domain} is unavailable: ${tried}`, last);
  }

  /**
   * One registry request on one endpoint, with auth and redirects: attaches the known Authorization,
   * answers one 401 challenge, follows redirects (dropping Authorization on a host change). Returns
   * the final response; 401/403 become errors here since only this layer knows what was tried.
   */
  async #exchange(ep: Endpoint, ref: ImageRef, creds: Credentials | undefined, ex: Exchange, signal: AbortSignal | undefined): Promise<IncomingMessage> {
    const scope = `repository:${ref.path}:pull`;
    let challenged = false;
    for (;;) {
      const authorization = await this.#auth.authorize(ep, scope, creds);
      const headers = authorization === undefined ? ex.headers : { ...ex.headers, authorization };
      const res = await this.#sendFollowing(ep, new URL(ep.base + ex.path), ex.method, headers, signal);
      const status = res.statusCode ?? 0;
      if (status === 401 && !challenged) {
        challenged = true;
        const challenges = challengesOf(res);
        if (this.#auth.handleUnauthorized(ep, scope, creds, challenges)) {
          discard(res);
          continue;
        }
      }
      if (status === 401 || status === 403) throw await this.#deniedError(ep, ref, res, creds);
      return res;
    }
  }

  async #sendFollowing(ep: Endpoint, url: URL, method: 'GET' | 'HEAD', headers: Record<string, string>, signal: AbortSignal | undefined): Promise<IncomingMessage> {
    let current = url;
    let currentHeaders = headers;
    for (let hop = 0; ; hop++) {
      const sameHost = current.host === new URL(ep.base).host;
      const tls: TlsSettings | undefined = sameHost ? ep.tls : undefined;
      const res = await this.#sendWithRetry({ url: current, method, headers: currentHeaders, tls, signal });
      const status = res.statusCode ?? 0;
      const location = header(res, 'location');
      if (![301, 302, 303, 307, 308].includes(status) || location === undefined) return res;
      discard(res);
      if (hop >= MAX_REDIRECTS) throw unavailable(`${endpointLabel(ep)}: more than ${MAX_REDIRECTS} redirects for ${url.pathname}`);
      const next = new URL(location, current);
      if (next.protocol !== 'https:' && !(next.protocol === 'http:' && (current.protocol === 'http:' || isPlainHttpAllowed(next.host, this.#config)))) {
        throw failedPrecondition(`${endpointLabel(ep)} redirected ${url.pathname} to ${next.origin}, which is not HTTPS; refusing to follow`);
      }
      if (next.host !== current.host) {
        // Storage backends get signed URLs; the registry's credentials must not leak to them.
        currentHeaders = Object.fromEntries(Object.entries(currentHeaders).filter(([k]) => k !== 'authorization'));
      }
      current = next;
    }
  }

  /** One HTTP exchange with retries on connection failures, timeouts, 5xx and 429. */
  async #sendWithRetry(req: {
    url: URL;
    method: 'GET' | 'HEAD' | 'POST';
    headers: Record<string, string>;
    body?: string;
    tls?: TlsSettings;
    signal?: AbortSignal;
  }): Promise<IncomingMessage> {
    const attempts = Math.max(1, this.#retry.attempts);
    for (let attempt = 1; ; attempt++) {
      let res: IncomingMessage;
      try {
        res = await this.#http.send({ ...req, timeoutMs: this.#timeoutMs, bodyIdleTimeoutMs: this.#bodyIdleTimeoutMs });
      } catch (err) {
        if (isAbortError(err) || err instanceof BerthError) throw err;
        if (isRetryableNetworkError(err) && attempt < attempts) {
          this.#logger?.debug({ url: req.url.href, attempt, err: errorMessage(err) }, 'registry: retrying after a connection error');
          await sleep(backoffDelay(this.#retry, attempt), undefined, { signal: req.signal });
          continue;
        }
        throw transportError(req.url, err, attempt);
      }
      const status = res.statusCode ?? 0;
      if (isRetryableStatus(status) && attempt < attempts) {
        discard(res);
        const delay = backoffDelay(this.#retry, attempt, parseRetryAfter(header(res, 'retry-after')));
        this.#logger?.debug({ url: req.url.href, attempt, status }, 'registry: retrying after a server error');
        await sleep(delay, undefined, { signal: req.signal });
        continue;
      }
      return res;
    }
  }

  async #deniedError(ep: Endpoint, ref: ImageRef, res: IncomingMessage, creds: Credentials | undefined): Promise<BerthError> {
    const status = res.statusCode ?? 0;
    const detail = registryErrorText(await readErrorBody(res));
    const hint =
      creds === undefined
        ? 'the repository does not exist or needs credentials, and none were given'
        : status === 401
          ? 'check the credentials'
          : 'the credentials are valid but lack pull access to this repository';
    const msg = `registry ${endpointLabel(ep)} refused pull of repository ${ref.path} (${status} ${res.statusMessage ?? ''}${detail ? `: ${detail}` : ''}): ${hint}`;
    return status === 401 ? unauthenticated(msg) : permissionDenied(msg);
  }

  async #statusError(ep: Endpoint, ref: ImageRef, res: IncomingMessage, what: string): Promise<BerthError> {
    const status = res.statusCode ?? 0;
    const detail = registryErrorText(await readErrorBody(res));
    const answer = `${endpointLabel(ep)} answered ${status} ${res.statusMessage ?? ''}${detail ? ` (${detail})` : ''}`;
    if (status === 404) {
      return notFound(what === 'manifest' ? `image ${refString(ref)} not found: ${answer}` : `${what} of image ${refString(ref)} not found: ${answer}`);
    }
    if (status === 429) return unavailable(`${endpointLabel(ep)} is rate-limiting pulls of ${refString(ref)}: ${answer}; try again later`);
    if (status === 400) return invalidArgument(`${what} of ${refString(ref)}: ${answer}`);
    if (status >= 500) return unavailable(`${what} of ${refString(ref)}: ${answer} after ${this.#retry.attempts} attempts`);
    return failedPrecondition(`${what} of ${refString(ref)}: ${answer}`);
  }
}

function header(res: IncomingMessage, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** `CODE: message` of the first entry of a registry JSON error body, else the text trimmed. */
function registryErrorText(body: string): string {
  try {
    const doc = JSON.parse(body) as { errors?: Array<{ code?: string; message?: string }> };
    const first = doc.errors?.[0];
    if (first) return [first.code, first.message].filter(Boolean).join(': ');
  } catch {
    // not JSON
  }
  return body.trim().slice(0, 200);
}

function schema1Error(ref: ImageRef): BerthError {
  return failedPrecondition(
    `image ${refString(ref)} uses Docker image manifest schema 1, which is not supported (it was deprecated in 2017): push it again with a current client (docker, buildah, skopeo) to store it as schema 2 or OCI`,
  );
}

function digestMismatch(ep: Endpoint, ref: ImageRef, expected: string, actual: string): BerthError {
  return failedPrecondition(
    `${endpointLabel(ep)} served a manifest for ${refString(ref)} whose content has digest ${actual}, not ${expected}: the content was altered or the registry is broken`,
  );
}

function transportError(url: URL, err: unknown, attempts: number): BerthError {
  const code = errorCode(err);
  let hint = '';
  if (code !== undefined && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)) {
    hint = ': the TLS certificate is not trusted; add the registry CA with caFile';
  } else if (code === 'EPROTO' || (code !== undefined && code.startsWith('HPE_'))) {
    hint = ': the endpoint does not speak the expected protocol (HTTP vs HTTPS?)';
  }
  const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
  return unavailable(`${url.origin} unreachable${tries}: ${errorMessage(err)}${hint}`, err);
}
