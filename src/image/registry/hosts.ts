// Which endpoints serve a registry domain, in the order to try them: the configured mirrors, then the
// upstream registry itself (unless skipUpstream). Scheme and TLS trust are decided here, once, so the
// rest of the client only sees ready-to-use endpoints.
import { failedPrecondition, invalidArgument } from '../../util/errors.ts';
import type { RegistryConfig, RegistryHostConfig } from './config.ts';

export interface TlsSettings {
  /** CA bundles trusted on top of the system CAs. */
  caFiles: string[];
  certFile?: string;
  keyFile?: string;
  skipVerify: boolean;
}

export interface Endpoint {
  /** Base URL with no trailing slash; request paths (`/v2/...`) are appended to it. */
  base: string;
  /** `host[:port]` of the endpoint: keys the auth caches and names the endpoint in messages. */
  host: string;
  /** The registry domain of the image this endpoint serves (`docker.io`). */
  domain: string;
  mirror: boolean;
  tls: TlsSettings;
  /** Settings whose credentials apply to this endpoint. */
  hostConfig: RegistryHostConfig;
}

/** Docker Hub's registry API is not served at the name its images use. */
const UPSTREAM_HOSTS: Record<string, string> = { 'docker.io': 'registry-1.docker.io' };

/** Splits `host:port` / `[v6]:port` / `host` into its parts; the host keeps IPv6 brackets. */
export function splitHostPort(hostport: string): { hostname: string; port?: string } {
  if (hostport.startsWith('[')) {
    const end = hostport.indexOf(']');
    const rest = hostport.slice(end + 1);
    return rest.startsWith(':') ? { hostname: hostport.slice(0, end + 1), port: rest.slice(1) } : { hostname: hostport };
  }
  const colon = hostport.lastIndexOf(':');
  return colon < 0 ? { hostname: hostport } : { hostname: hostport.slice(0, colon), port: hostport.slice(colon + 1) };
}

/**
 * True when `hostport` may be reached over plain HTTP: an allowlist entry without a port matches the
 * host on any port; one with a port matches only that port.
 */
export function isPlainHttpAllowed(hostport: string, config: RegistryConfig): boolean {
  if (config.hosts[hostport]?.plainHttp === true) return true;
  const target = hostport.toLowerCase();
  const { hostname } = splitHostPort(target);
  return config.plainHttpHosts.some((entry) => {
    const e = entry.toLowerCase();
    return splitHostPort(e).port === undefined ? e === hostname : e === target;
  });
}

function toArray(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** Parses a mirror entry: a URL, or a bare `host[:port][/prefix]` (HTTPS unless plain HTTP is allowed). */
function mirrorBase(domain: string, entry: string, config: RegistryConfig): URL {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(entry) ? entry : null;
  let url: URL;
  try {
    if (withScheme) {
      url = new URL(withScheme);
    } else {
      const host = entry.split('/')[0] ?? '';
      url = new URL(`${isPlainHttpAllowed(host, config) ? 'http' : 'https'}://${entry}`);
    }
  } catch {
    throw invalidArgument(`mirror ${JSON.stringify(entry)} of registry ${domain} is not a URL`);
  }
  // An explicit http:// in the operator's own mirror list is a deliberate choice, like containerd's hosts.toml.
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw invalidArgument(`mirror ${JSON.stringify(entry)} of registry ${domain} must be an http:// or https:// URL`);
  }
  return url;
}

/** Base URL text without a trailing slash or `/v2` (we add `/v2/...` ourselves). */
function baseOf(url: URL): string {
  const path = url.pathname.replace(/\/+$/, '').replace(/\/v2$/, '');
  return `${url.protocol}//${url.host}${path}`;
}

/** The endpoints to try for `domain`, mirrors first. */
export function resolveEndpoints(domain: string, config: RegistryConfig): Endpoint[] {
  const domainConfig = config.hosts[domain] ?? {};
  const domainCas = toArray(domainConfig.caFile);
  const endpoints: Endpoint[] = [];

  for (const entry of domainConfig.mirrors ?? []) {
    const url = mirrorBase(domain, entry, config);
    const mirrorConfig = config.hosts[url.host] ?? {};
    endpoints.push({
      base: baseOf(url),
      host: url.host,
      domain,
      mirror: true,
      tls: {
        caFiles: [...domainCas, ...toArray(mirrorConfig.caFile)],
        certFile: mirrorConfig.certFile,
        keyFile: mirrorConfig.keyFile,
        skipVerify: mirrorConfig.skipVerify === true,
      },
      hostConfig: mirrorConfig,
    });
  }

  if (domainConfig.skipUpstream === true) {
    if (endpoints.length === 0) {
      throw failedPrecondition(`registry ${domain} is configured with skipUpstream but has no mirrors: nothing to pull from`);
    }
    return endpoints;
  }

  const upstreamHost = UPSTREAM_HOSTS[domain] ?? domain;
  const scheme = isPlainHttpAllowed(domain, config) ? 'http' : 'https';
  endpoints.push({
    base: `${scheme}://${upstreamHost}`,
    host: upstreamHost,
    domain,
    mirror: false,
    tls: {
      caFiles: domainCas,
      certFile: domainConfig.certFile,
      keyFile: domainConfig.keyFile,
      skipVerify: domainConfig.skipVerify === true,
    },
    hostConfig: domainConfig,
  });
  return endpoints;
}

/** How an endpoint is named in messages: the registry domain, or `mirror <url>`. */
export function endpointLabel(endpoint: Endpoint): string {
  return endpoint.mirror ? `mirror ${endpoint.base}` : endpoint.domain;
}
