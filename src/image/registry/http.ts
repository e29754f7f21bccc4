// The HTTP layer under the registry client: one request, no retries, no redirects, no auth. It owns
// connection reuse (keep-alive agents, one per TLS trust setting) and timeouts, so a stalled
// registry surfaces as an ETIMEDOUT error the retry layer understands.
import type * as Http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { readFile } from 'node:fs/promises';
import { failedPrecondition } from '../../util/errors.ts';
import type { TlsSettings } from './hosts.ts';

// Taken as the CommonJS module it is: an ES import of node:http reads every export, and three of
// them (WebSocket, CloseEvent, MessageEvent) load Node's bundled undici (~0.8 MB of source, plus
// web streams and perf_hooks) that berthd never uses.
const http = process.getBuiltinModule('node:http');

export interface HttpRequest {
  url: URL;
  method: 'GET' | 'HEAD' | 'POST';
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Trust for HTTPS; absent means system CAs only. */
  tls?: TlsSettings;
  /** Longest silence allowed while connecting and waiting for the response headers. */
  timeoutMs: number;
  /** Longest silence allowed while the body streams (a paused consumer counts as silence). */
  bodyIdleTimeoutMs: number;
  signal?: AbortSignal;
  /** Source address of the connection (p2p: peers check it against their peer list). */
  localAddress?: string;
}

/** System CAs (Debian: /etc/ssl/certs), or Node's bundled list on a machine without a system store. */
function systemCas(): string[] {
  const system = tls.getCACertificates('system');
  return system.length > 0 ? system : tls.getCACertificates('bundled');
}

async function createHttpsAgent(settings: TlsSettings): Promise<https.Agent> {
  const read = async (file: string, what: string): Promise<Buffer> => {
    try {
      return await readFile(file);
    } catch (err) {
      throw failedPrecondition(`cannot read ${what} ${file}: ${(err as Error).message}`);
    }
  };
  const extraCas = await Promise.all(settings.caFiles.map((f) => read(f, 'registry CA file')));
  const options: https.AgentOptions = {
    keepAlive: true,
    maxSockets: MAX_SOCKETS,
    ca: [...systemCas(), ...extraCas.map((b) => b.toString())],
    rejectUnauthorized: !settings.skipVerify,
  };
  if (settings.certFile !== undefined) options.cert = await read(settings.certFile, 'client certificate');
  if (settings.keyFile !== undefined) options.key = await read(settings.keyFile, 'client key');
  return new https.Agent(options);
}

/** Connections per host and agent: enough for a pull's parallel layer downloads. */
const MAX_SOCKETS = 32;

/**
 * Sends requests over keep-alive connections: one HTTP agent, and one HTTPS agent per distinct trust
 * setting (CA files, client cert, skipVerify). Owned by one client; close() drops idle sockets.
 */
export class HttpTransport {
  readonly #httpAgent = new http.Agent({ keepAlive: true, maxSockets: MAX_SOCKETS });
  readonly #httpsAgents = new Map<string, Promise<https.Agent>>();

  #httpsAgentFor(settings: TlsSettings | undefined): Promise<https.Agent> {
    const s: TlsSettings = settings ?? { caFiles: [], skipVerify: false };
    const key = JSON.stringify([s.caFiles, s.certFile, s.keyFile, s.skipVerify]);
    let agent = this.#httpsAgents.get(key);
    if (agent === undefined) {
      agent = createHttpsAgent(s);
      this.#httpsAgents.set(key, agent);
      // A CA file that failed to load may be fixed later: don't cache the failure.
      agent.catch(() => this.#httpsAgents.delete(key));
    }
    return agent;
  }

  /** Sends one request and resolves once the response headers arrive; the body is left to the caller. */
  async send(req: HttpRequest): Promise<Http.IncomingMessage> {
    const isHttps = req.url.protocol === 'https:';
    const agent = isHttps ? await this.#httpsAgentFor(req.tls) : this.#httpAgent;
    return sendWith(agent, isHttps, req);
  }

  /** Closes every connection, busy ones included: call it when the client is no longer used. */
  close(): void {
    this.#httpAgent.destroy();
    for (const agent of this.#httpsAgents.values()) void agent.then((a) => a.destroy(), () => {});
    this.#httpsAgents.clear();
  }
}

function timeoutError(url: URL, ms: number, phase: string): Error {
  return Object.assign(new Error(`no answer from ${url.host} for ${ms}ms ${phase}`), { code: 'ETIMEDOUT' });
}

function sendWith(agent: Http.Agent, isHttps: boolean, req: HttpRequest): Promise<Http.IncomingMessage> {
  const headers: Record<string, string> = { 'user-agent': 'berth', ...req.headers };
  if (req.body !== undefined) headers['content-length'] = String(Buffer.byteLength(req.body));
  return new Promise((resolve, reject) => {
    const request = (isHttps ? https : http).request(req.url, { method: req.method, headers, agent, signal: req.signal, localAddress: req.localAddress });
    const onHeadTimeout = (): void => {
      request.destroy(timeoutError(req.url, req.timeoutMs, 'waiting for a response'));
    };
    request.setTimeout(req.timeoutMs, onHeadTimeout);
    request.once('error', reject);
    request.once('response', (res) => {
      request.removeListener('error', reject);
      request.removeListener('timeout', onHeadTimeout);
      // From here on errors travel through the response stream to whoever reads the body.
      request.on('error', (err) => res.destroy(err));
      request.setTimeout(req.bodyIdleTimeoutMs, () =>
        res.destroy(timeoutError(req.url, req.bodyIdleTimeoutMs, 'while reading the body')),
      );
      resolve(res);
    });
    request.end(req.body);
  });
}

/** Reads a whole (small) body; refuses bodies over `limit` bytes so a hostile server can't exhaust memory. */
export async function readBody(res: Http.IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(res.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    res.destroy();
    throw new BodyTooLargeError(limit);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      res.destroy();
      throw new BodyTooLargeError(limit);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

export class BodyTooLargeError extends Error {
  constructor(limit: number) {
    super(`response body is larger than ${limit} bytes`);
    this.name = 'BodyTooLargeError';
  }
}

/** Reads a short error body for the message, never failing. */
export async function readErrorBody(res: Http.IncomingMessage): Promise<string> {
  try {
    return (await readBody(res, 64 * 1024)).toString('utf8');
  } catch {
    return '';
  }
}

/** Throws the body away so the keep-alive socket can be reused. */
export function discard(res: Http.IncomingMessage): void {
  res.on('error', () => {});
  res.resume();
}
