// Registry authentication: anonymous, Basic, and the Bearer token flow of the distribution token
// spec (401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…` → ask the realm for a token →
// retry with it). Tokens are cached per (endpoint, credentials, scope), so requests for one pull
// share a token but credentials of one pod never unlock an image for another.
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { BerthError, failedPrecondition, permissionDenied, unauthenticated } from '../../util/errors.ts';
import type { PullAuth, RegistryHostConfig } from './config.ts';
import { endpointLabel, type Endpoint, type TlsSettings } from './hosts.ts';
import { discard, readBody, readErrorBody } from './http.ts';

export interface Credentials {
  username?: string;
  password?: string;
  /** OAuth2 refresh token for the token endpoint. */
  identityToken?: string;
  /** Bearer token sent to the registry as is. */
  registryToken?: string;
}

export interface Challenge {
  /** Lowercased auth scheme: `bearer`, `basic`. */
  scheme: string;
  params: Record<string, string>;
}

/** How the authorizer sends its own requests (token fetches); the client supplies one with retries. */
export type TokenRequester = (req: {
  url: URL;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string;
  tls?: TlsSettings;
}) => Promise<IncomingMessage>;

function decodeAuth(auth: string, where: string): { username: string; password: string } {
  const text = Buffer.from(auth, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon < 0) throw failedPrecondition(`${where}: auth is not base64 of user:password`);
  return { username: text.slice(0, colon), password: text.slice(colon + 1) };
}

/** Credentials from a CRI AuthConfig or a host's config entry; undefined when there are none. */
export function toCredentials(src: PullAuth | RegistryHostConfig | undefined, where: string): Credentials | undefined {
  if (src === undefined) return undefined;
  const c: Credentials = {};
  if (src.username) {
    c.username = src.username;
    c.password = src.password ?? '';
  } else if (src.auth) {
    Object.assign(c, decodeAuth(src.auth, where));
  }
  if (src.identityToken) c.identityToken = src.identityToken;
  if (src.registryToken) c.registryToken = src.registryToken;
  return Object.keys(c).length > 0 ? c : undefined;
}

/** `https://index.docker.io/v1/` → `docker.io`; `myreg:5000/x` → `myreg:5000`. */
export function normalizeServerAddress(address: string): string {
  const host = address.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').split('/')[0] ?? '';
  const lower = host.toLowerCase();
  return lower === 'index.docker.io' || lower === 'registry-1.docker.io' ? 'docker.io' : lower;
}

/**
 * The credentials to present to `endpoint`. The kubelet's are meant for the image's registry: they
 * go to the upstream endpoint, and to a mirror only when their server address names that mirror.
 * Otherwise the host's configured credentials are used.
 */
export function credentialsFor(endpoint: Endpoint, pullAuth: PullAuth | undefined): Credentials | undefined {
  if (pullAuth !== undefined) {
    const server = pullAuth.serverAddress ? normalizeServerAddress(pullAuth.serverAddress) : '';
    const applies = endpoint.mirror
      ? server !== '' && server === endpoint.host.toLowerCase()
      : server === '' || server === endpoint.domain.toLowerCase() || server === endpoint.host.toLowerCase();
    const creds = applies ? toCredentials(pullAuth, `credentials for ${endpointLabel(endpoint)}`) : undefined;
    if (creds !== undefined) return creds;
  }
  return toCredentials(endpoint.hostConfig, `configured credentials for ${endpoint.host}`);
}

const TOKEN_CHAR = /[A-Za-z0-9!#$%&'*+.^_`|~-]/;

/**
 * Parses WWW-Authenticate values (RFC 7235): each value may hold several challenges, each a scheme
 * followed by comma-separated `key=value` or `key="quoted, value"` parameters.
 */
export function parseChallenges(values: readonly string[]): Challenge[] {
  const out: Challenge[] = [];
  for (const value of values) {
    let i = 0;
    const skip = (chars: RegExp): void => {
      while (i < value.length && chars.test(value[i] as string)) i++;
    };
    const token = (): string => {
      const start = i;
      while (i < value.length && TOKEN_CHAR.test(value[i] as string)) i++;
      return value.slice(start, i);
    };
    let current: Challenge | undefined;
    while (i < value.length) {
      skip(/[\s,]/);
      const start = i;
      const name = token();
      if (name === '') {
        i++; // stray character: skip it rather than loop forever
        continue;
      }
      skip(/\s/);
      if (value[i] === '=' && current !== undefined) {
        i++;
        skip(/\s/);
        let v = '';
        if (value[i] === '"') {
          i++;
          while (i < value.length && value[i] !== '"') {
            if (value[i] === '\\' && i + 1 < value.length) i++;
            v += value[i];
            i++;
          }
          i++;
        } else {
          // Unquoted values should be tokens, but servers send bare URLs: take everything up to a comma.
          const startValue = i;
          while (i < value.length && value[i] !== ',' && !/\s/.test(value[i] as string)) i++;
          v = value.slice(startValue, i);
        }
        current.params[name.toLowerCase()] = v;
      } else {
        i = start + name.length;
        current = { scheme: name.toLowerCase(), params: {} };
        out.push(current);
      }
    }
  }
  return out;
}

export function challengesOf(res: IncomingMessage): Challenge[] {
  return parseChallenges(res.headersDistinct['www-authenticate'] ?? []);
}

interface CachedToken {
  header: string;
  expiresAt: number;
}

/** Tokens are refreshed this long before the server says they expire, to absorb clock and network delay. */
const EXPIRY_MARGIN_MS = 10_000;
/** Cache size past which expired tokens are swept. */
const MAX_CACHED_TOKENS = 256;
/** The token spec's default lifetime when the server names none. */
const DEFAULT_TOKEN_SECONDS = 60;

function credentialsId(creds: Credentials | undefined): string {
  return creds === undefined ? 'anonymous' : createHash('sha256').update(JSON.stringify(creds)).digest('hex').slice(0, 16);
}

export interface AuthorizerOptions {
  request: TokenRequester;
  /** True if plain HTTP to this host is allowed (token realms too). */
  plainHttpAllowed: (hostport: string) => boolean;
}

export class Authorizer {
  readonly #request: TokenRequester;
  readonly #plainHttpAllowed: (hostport: string) => boolean;
  /** Basic header per endpoint+credentials, once the endpoint asked for Basic. */
  readonly #basic = new Map<string, string>();
  /** Bearer challenge per endpoint+credentials, so later scopes get a token without a 401 first. */
  readonly #bearer = new Map<string, Challenge>();
  readonly #tokens = new Map<string, CachedToken>();
  /** Token fetches under way, shared by concurrent requests (a pull starts many blob fetches at once). */
  readonly #inflight = new Map<string, Promise<CachedToken>>();

  constructor(options: AuthorizerOptions) {
    this.#request = options.request;
    this.#plainHttpAllowed = options.plainHttpAllowed;
  }

  /** The Authorization header to send up front, if the endpoint's scheme is already known. */
  async authorize(endpoint: Endpoint, scope: string, creds: Credentials | undefined): Promise<string | undefined> {
    const base = `${endpoint.base}\n${credentialsId(creds)}`;
    const basic = this.#basic.get(base);
    if (basic !== undefined) return basic;
    const challenge = this.#bearer.get(base);
    if (challenge === undefined) return undefined;
    if (creds?.registryToken) return `Bearer ${creds.registryToken}`;
    const key = `${base}\n${scope}`;
    const cached = this.#tokens.get(key);
    if (cached !== undefined && cached.expiresAt > Date.now()) return cached.header;
    let pending = this.#inflight.get(key);
    if (pending === undefined) {
      pending = this.#fetchToken(endpoint, challenge, scope, creds).finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
    }
    const token = await pending;
    this.#tokens.set(key, token);
    if (this.#tokens.size > MAX_CACHED_TOKENS) this.#dropExpired();
    return token.header;
  }

  /** Keeps a long-running daemon's cache from growing with every repository it ever pulled. */
  #dropExpired(): void {
    const now = Date.now();
    for (const [key, token] of this.#tokens) if (token.expiresAt <= now) this.#tokens.delete(key);
  }

  /**
   * Learns from a 401's challenges. Returns true when a retry can carry new credentials, false when
   * there is nothing more to offer (no credentials for Basic, no known scheme).
   */
  handleUnauthorized(endpoint: Endpoint, scope: string, creds: Credentials | undefined, challenges: Challenge[]): boolean {
    const base = `${endpoint.base}\n${credentialsId(creds)}`;
    this.#tokens.delete(`${base}\n${scope}`);
    this.#basic.delete(base);
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    if (bearer !== undefined && (bearer.params.realm !== undefined || creds?.registryToken)) {
      this.#bearer.set(base, bearer);
      return true;
    }
    const basic = challenges.find((c) => c.scheme === 'basic');
    if (basic !== undefined && creds?.username !== undefined) {
      const pair = Buffer.from(`${creds.username}:${creds.password ?? ''}`).toString('base64');
      this.#basic.set(base, `Basic ${pair}`);
      return true;
    }
    return false;
  }

  async #fetchToken(endpoint: Endpoint, challenge: Challenge, scope: string, creds: Credentials | undefined): Promise<CachedToken> {
    const label = endpointLabel(endpoint);
    const realmText = challenge.params.realm ?? '';
    let realm: URL;
    try {
      realm = new URL(realmText);
    } catch {
      throw failedPrecondition(`registry ${label} sent a Bearer challenge with an invalid realm ${JSON.stringify(realmText)}`);
    }
    const plainOk =
      realm.protocol === 'https:' ||
      (realm.protocol === 'http:' && (this.#plainHttpAllowed(realm.host) || endpoint.base.startsWith('http:')));
    if (!plainOk) {
      throw failedPrecondition(`registry ${label} points to token server ${realm.origin}, which is not HTTPS; refusing to use it`);
    }
    // The registry's own CAs are trusted for its token server; skipVerify only for the same host.
    const sameHost = realm.hostname === new URL(endpoint.base).hostname;
    const tls: TlsSettings = sameHost ? endpoint.tls : { caFiles: endpoint.tls.caFiles, skipVerify: false };
    const scopes = [...new Set([scope, ...(challenge.params.scope ?? '').split(' ').filter((s) => s !== '')])];
    const service = challenge.params.service;

    let res: IncomingMessage | undefined;
    if (creds?.identityToken) {
      // OAuth2 refresh-token grant; servers without the OAuth2 endpoint answer 404/405, then fall back to GET.
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'berth' });
      if (service !== undefined) form.set('service', service);
      form.set('scope', scopes.join(' '));
      res = await this.#request({
        url: realm,
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form.toString(),
        tls,
      });
      if (res.statusCode === 404 || res.statusCode === 405) {
        discard(res);
        res = undefined;
      }
    }
    if (res === undefined) {
      const url = new URL(realm);
      if (service !== undefined) url.searchParams.set('service', service);
      for (const s of scopes) url.searchParams.append('scope', s);
      const headers: Record<string, string> = {};
      if (creds?.username !== undefined) {
        url.searchParams.set('account', creds.username);
        headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password ?? ''}`).toString('base64')}`;
      }
      res = await this.#request({ url, method: 'GET', headers, tls });
    }

    const status = res.statusCode ?? 0;
    if (status !== 200) {
      const body = (await readErrorBody(res)).slice(0, 300).trim();
      const what = `token server ${realm.origin} for registry ${label} refused ${creds ? 'the credentials' : 'an anonymous token'} (${status} ${res.statusMessage ?? ''})${body ? `: ${body}` : ''}`;
      if (status === 401) throw unauthenticated(`${what}; check the credentials`);
      if (status === 403) throw permissionDenied(what);
      throw new BerthError(status >= 500 ? 'unavailable' : 'failed-precondition', what);
    }
    let doc: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      doc = JSON.parse((await readBody(res, 1 << 20)).toString('utf8')) as typeof doc;
    } catch (err) {
      throw failedPrecondition(`token server ${realm.origin} for registry ${label} answered with no usable JSON: ${(err as Error).message}`);
    }
    const token = typeof doc.token === 'string' && doc.token !== '' ? doc.token : doc.access_token;
    if (typeof token !== 'string' || token === '') {
      throw failedPrecondition(`token server ${realm.origin} for registry ${label} answered without a token`);
    }
    const seconds = typeof doc.expires_in === 'number' && doc.expires_in > 0 ? doc.expires_in : DEFAULT_TOKEN_SECONDS;
    return { header: `Bearer ${token}`, expiresAt: Date.now() + Math.max(seconds * 1000 - EXPIRY_MARGIN_MS, 1000) };
  }
}
