// The controller's Kubernetes API client: credentials and TLS come from client-node's KubeConfig
// (in-cluster token with rotation, or a kubeconfig file); requests are plain node:http(s) so the
// agent loads none of client-node's generated API. Every answer is counted by code for metrics.
import { request as httpRequest, Agent as HttpAgent, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest, type Agent as HttpsAgent } from 'node:https';
// Only the config module: the package index also loads every generated API group and model.
import { KubeConfig } from '@kubernetes/client-node/dist/config.js';
import type { Metrics } from './metrics.ts';

/** A non-2xx answer of the API server, with its Status reason when it sent one. */
export class ApiError extends Error {
  readonly code: number;
  readonly reason: string;
  /** Seconds the server asked us to wait (429/503 Retry-After). */
  readonly retryAfter: number | undefined;
  constructor(code: number, reason: string, message: string, retryAfter?: number) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.reason = reason;
    this.retryAfter = retryAfter;
  }
}

export type PatchType = 'merge' | 'json';
const PATCH_CONTENT_TYPES: Record<PatchType, string> = {
  merge: 'application/merge-patch+json',
  json: 'application/json-patch+json',
};

export interface KubeOptions {
  /** kubeconfig file; in-cluster service account config when absent. */
  kubeconfig?: string;
  metrics: Metrics;
  /** Deadline of one non-watch request, ms. */
  requestTimeoutMs?: number;
}

export class Kube {
  readonly #kc: KubeConfig;
  readonly #server: URL;
  readonly #metrics: Metrics;
  readonly #timeoutMs: number;
  #agent: HttpAgent | HttpsAgent | undefined;

  constructor(opts: KubeOptions) {
    const kc = new KubeConfig();
    if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
    else kc.loadFromCluster();
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig names no current cluster');
    this.#kc = kc;
    this.#server = new URL(cluster.server);
    this.#metrics = opts.metrics;
    this.#timeoutMs = opts.requestTimeoutMs ?? 30_000;
  }

  /** Options for one request: auth headers are re-read each time (projected tokens rotate). */
  async #options(method: string, path: string, headers: Record<string, string>): Promise<RequestOptions> {
    const opts: RequestOptions & { agent?: HttpAgent | HttpsAgent } = {};
    await this.#kc.applyToHTTPSOptions(opts);
    const plain = this.#server.protocol === 'http:';
    // One keep-alive agent for the life of the process (KubeConfig makes a new one per call).
    this.#agent ??= plain ? new HttpAgent({ keepAlive: true }) : opts.agent;
    return {
      ...opts,
      agent: this.#agent,
      method,
      hostname: this.#server.hostname,
      port: this.#server.port || (plain ? 80 : 443),
      path: `${this.#server.pathname.replace(/\/$/, '')}${path}`,
      headers: { ...(opts.headers as Record<string, string> | undefined), accept: 'application/json', ...headers },
    };
  }

  /** Sends a request; resolves with the open response (any status). */
  async open(method: string, path: string, body?: string, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<IncomingMessage> {
    const opts = await this.#options(method, path, headers);
    const send = this.#server.protocol === 'http:' ? httpRequest : httpsRequest;
    return new Promise((resolve, reject) => {
      const req = send({ ...opts, signal }, (res) => {
        this.#metrics.inc('berth_controller_api_requests_total', { code: String(res.statusCode ?? 0) });
        resolve(res);
      });
      req.once('error', (err) => {
        this.#metrics.inc('berth_controller_api_requests_total', { code: 'error' });
        reject(err);
      });
      req.end(body);
    });
  }

  /** A JSON request with a deadline; non-2xx answers throw ApiError. */
  async request<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    const signal = AbortSignal.timeout(this.#timeoutMs);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const res = await this.open(method, path, payload, payload === undefined ? {} : { 'content-type': contentType }, signal);
    const text = await readAll(res, signal);
    const code = res.statusCode ?? 0;
    if (code >= 200 && code < 300) return (text ? JSON.parse(text) : {}) as T;
    throw apiError(code, text, res.headers['retry-after'], `${method} ${path}`);
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  create<T>(path: string, obj: unknown): Promise<T> {
    return this.request<T>('POST', path, obj);
  }

  patch<T>(path: string, patch: unknown, type: PatchType = 'merge'): Promise<T> {
    return this.request<T>('PATCH', path, patch, PATCH_CONTENT_TYPES[type]);
  }

  close(): void {
    this.#agent?.destroy();
  }
}

export function apiError(code: number, text: string, retryAfter: string | string[] | undefined, what: string): ApiError {
  let reason = '';
  let message = text.slice(0, 300);
  try {
    const status = JSON.parse(text) as { reason?: string; message?: string };
    reason = status.reason ?? '';
    message = status.message ?? message;
  } catch {
    // not a Status object
  }
  const after = Number(Array.isArray(retryAfter) ? retryAfter[0] : retryAfter);
  return new ApiError(code, reason, `${what}: ${code} ${reason} ${message}`.trim(), Number.isFinite(after) ? after : undefined);
}

export async function readAll(res: IncomingMessage, signal?: AbortSignal): Promise<string> {
  const chunks: Buffer[] = [];
  const onAbort = (): void => {
    res.destroy(signal?.reason as Error);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const c of res) chunks.push(c as Buffer);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Path of a core or berth.io resource collection (`namespace` for namespaced kinds). */
export function resourcePath(group: string, version: string, plural: string, namespace?: string): string {
  const base = group === '' ? `/api/${version}` : `/apis/${group}/${version}`;
  return namespace ? `${base}/namespaces/${namespace}/${plural}` : `${base}/${plural}`;
}
