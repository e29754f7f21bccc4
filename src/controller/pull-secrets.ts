// Registry credentials for a prefetch: its pull secrets are read by name at each pull (never
// cached, so a rotated secret is used at once and a deleted one stops working), and the entry for
// the image's registry is picked the way the kubelet does: the key's host may glob one label per
// `*`, its port must match, and its path must be a prefix of the repository.
import type { ImageRef } from '../image/reference.ts';
import { ApiError, type Kube } from './kube.ts';

/** A failure with the reason a status reports (`PullSecretNotFound`, `Unauthorized`, …). */
export class PrefetchError extends Error {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.name = 'PrefetchError';
    this.reason = reason;
  }
}

/** The CRI AuthConfig fields a pull can carry. */
export interface AuthConfig {
  username?: string;
  password?: string;
  auth?: string;
  identity_token?: string;
  registry_token?: string;
  server_address?: string;
}

interface DockerAuthEntry {
  username?: string;
  password?: string;
  auth?: string;
  identitytoken?: string;
  registrytoken?: string;
}

interface Secret {
  type?: string;
  data?: Record<string, string>;
}

const DOCKER_HUB = ['docker.io', 'index.docker.io', 'registry-1.docker.io'];

/** Whether a config.json key (`https://host:port/path`, `*.host`, `host`) covers this image. */
export function keyMatches(key: string, ref: ImageRef): boolean {
  let url: URL;
  try {
    url = new URL(/^[a-z]+:\/\//i.test(key) ? key : `https://${key}`);
  } catch {
    return false;
  }
  const [keyHost, keyPort = ''] = splitHostPort(url.host);
  const [imgHost, imgPort = ''] = splitHostPort(ref.domain);
  if (keyPort !== imgPort) return false;
  const hub = (h: string): boolean => DOCKER_HUB.includes(h);
  const hostOk = hub(keyHost) && hub(imgHost) ? true : globHost(keyHost, imgHost);
  if (!hostOk) return false;
  // Docker Hub keys carry the legacy `/v1/` path; it is not a repository prefix.
  const keyPath = hub(keyHost) ? '' : url.pathname.replace(/^\/+|\/+$/g, '');
  return keyPath === '' || ref.path === keyPath || ref.path.startsWith(`${keyPath}/`);
}

function splitHostPort(host: string): [string, string?] {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(host.toLowerCase());
  return m ? [m[1] ?? '', m[2]] : [host.toLowerCase()];
}

function globHost(pattern: string, host: string): boolean {
  const p = pattern.split('.');
  const h = host.split('.');
  if (p.length !== h.length) return false;
  return p.every((seg, i) => {
    const re = new RegExp(`^${seg.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^.]*')}$`);
    return re.test(h[i] ?? '');
  });
}

/**
 * The credentials for `ref` from the named secrets of `namespace`, first match wins; undefined
 * when no secret has an entry for its registry (the pull then goes anonymous).
 */
export async function resolvePullAuth(kube: Kube, namespace: string, names: string[], ref: ImageRef): Promise<AuthConfig | undefined> {
  for (const name of names) {
    let secret: Secret;
    try {
      secret = await kube.get<Secret>(`/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(name)}`);
    } catch (err) {
      if (err instanceof ApiError && err.code === 404) throw new PrefetchError('PullSecretNotFound', `pull secret ${namespace}/${name} does not exist`);
      if (err instanceof ApiError && err.code === 403) {
        throw new PrefetchError('PullSecretForbidden', `the node agent may not read secret ${namespace}/${name}; bind ClusterRole berth-pull-secret-reader in ${namespace}`);
      }
      throw new PrefetchError('PullSecretUnavailable', `reading pull secret ${namespace}/${name}: ${(err as Error).message}`);
    }
    const raw = secret.data?.['.dockerconfigjson'];
    if (secret.type !== 'kubernetes.io/dockerconfigjson' || !raw) {
      throw new PrefetchError('PullSecretInvalid', `secret ${namespace}/${name} is not of type kubernetes.io/dockerconfigjson`);
    }
    let auths: Record<string, DockerAuthEntry>;
    try {
      auths = (JSON.parse(Buffer.from(raw, 'base64').toString('utf8')) as { auths?: Record<string, DockerAuthEntry> }).auths ?? {};
    } catch {
      throw new PrefetchError('PullSecretInvalid', `secret ${namespace}/${name}: .dockerconfigjson is not JSON`);
    }
    for (const [key, entry] of Object.entries(auths)) {
      if (!keyMatches(key, ref)) continue;
      return {
        username: entry.username,
        password: entry.password,
        auth: entry.auth,
        identity_token: entry.identitytoken,
        registry_token: entry.registrytoken,
        server_address: ref.domain,
      };
    }
  }
  return undefined;
}
