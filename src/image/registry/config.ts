// The registry settings the client consumes. src/config maps berth's TOML onto these; the shapes are
// plain data so tests can build them inline.

/** Settings for one registry host, keyed by its domain (`docker.io`, `127.0.0.1:5000`) or a mirror's host. */
export interface RegistryHostConfig {
  /** Mirror endpoints tried in order before the upstream: `http://localhost:5000`, `https://m.example.com[/prefix]`. */
  mirrors?: string[];
  /** Don't fall back to the upstream registry when every mirror fails (air-gapped nodes). */
  skipUpstream?: boolean;
  /** Talk plain HTTP to this host, as if it were in `plainHttpHosts`. */
  plainHttp?: boolean;
  /** Accept any TLS certificate from this host (testing only; prefer caFile). */
  skipVerify?: boolean;
  /** PEM CA bundle(s) trusted for this host (and, on a registry domain, for its mirrors) on top of the system CAs. */
  caFile?: string | string[];
  /** PEM client certificate for mutual TLS with this host. */
  certFile?: string;
  /** PEM private key matching certFile. */
  keyFile?: string;
  /** Basic-auth user name (also sent to the token server for Bearer registries). */
  username?: string;
  /** Password matching username. */
  password?: string;
  /** base64 of `user:password`, as in a Docker config.json; used when username is not set. */
  auth?: string;
  /** OAuth2 refresh token, exchanged at the token endpoint for access tokens. */
  identityToken?: string;
  /** Bearer token sent to the registry as is. */
  registryToken?: string;
}

export interface RegistryConfig {
  /** Hosts allowed over plain HTTP: `localhost` (any port) or `host:port` (that port only). */
  plainHttpHosts: string[];
  /** Per-host settings, keyed by registry domain or mirror host. */
  hosts: Record<string, RegistryHostConfig>;
}

/**
 * Credentials for one pull, as the kubelet sends them in CRI's AuthConfig (camelCased). They apply
 * to the image's own registry, and to a mirror only when serverAddress names that mirror.
 */
export interface PullAuth {
  username?: string;
  password?: string;
  /** base64 `user:password`. */
  auth?: string;
  /** The registry these credentials are for; empty means the image's registry. */
  serverAddress?: string;
  /** OAuth2 refresh token. */
  identityToken?: string;
  /** Bearer token sent as is. */
  registryToken?: string;
}

export const DEFAULT_PLAIN_HTTP_HOSTS: readonly string[] = ['localhost', '127.0.0.1', '[::1]'];

export function defaultRegistryConfig(): RegistryConfig {
  return { plainHttpHosts: [...DEFAULT_PLAIN_HTTP_HOSTS], hosts: {} };
}
