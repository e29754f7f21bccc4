// The p2p server: the read-only part of the OCI distribution API that other nodes pull blobs from —
// `GET /v2/` and `GET|HEAD /v2/<name>/blobs/<digest>` — served from the local content store over
// plain HTTP. No manifests: a puller fetches those from the registry, which checks its credentials,
// and learns from them the digests it may then ask peers for. Only current peers (and loopback) are
// answered. Loaded only when `[p2p] listen` is set, so a node without p2p carries none of it.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { ContentStore } from '../content/store.ts';
import { isDigest } from '../util/digest.ts';
import { errorMessage } from '../util/errors.ts';
import { formatPeer, plainAddress, type Peer, type PeerSet } from './peers.ts';

// As in src/image/registry/http.ts: the CommonJS module, so Node's bundled undici is not loaded.
const http = process.getBuiltinModule('node:http');

/** Requests one client may have in flight; more get 429 and the puller moves on to another source. */
const PER_CLIENT_REQUESTS = 8;
/** A reader silent this long (gone, or stuck) loses its connection. */
const SOCKET_IDLE_MS = 120_000;
/** Repository names as the distribution spec shapes them; the store is one for all, but a bad name is a bad request. */
const NAME_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const ROUTE_RE = /^\/v2\/(.+)\/(blobs|manifests)\/([^/]+)$/;

export interface P2pServerOptions {
  listen: Peer;
  content: ContentStore;
  peers: PeerSet;
  log: Logger;
}

export interface P2pServer {
  /** `host:port` actually bound. */
  address: string;
  stop(): Promise<void>;
}

class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function startP2pServer(o: P2pServerOptions): Promise<P2pServer> {
  const inFlight = new Map<string, number>();
  const server: Server = http.createServer((req, res) => {
    const client = plainAddress(req.socket.remoteAddress ?? '');
    const count = inFlight.get(client) ?? 0;
    inFlight.set(client, count + 1);
    res.once('close', () => {
      const left = (inFlight.get(client) ?? 1) - 1;
      if (left === 0) inFlight.delete(client);
      else inFlight.set(client, left);
    });
    serve(req, res, client, count).catch((err: unknown) => {
      if (err instanceof HttpError) {
        o.log.debug({ client, url: req.url, status: err.status }, `p2p: ${err.message}`);
        sendError(res, err);
        return;
      }
      // The blob vanished mid-stream (GC) or the client left: drop the connection, the puller falls back.
      o.log.debug({ client, url: req.url, err: errorMessage(err) }, 'p2p: response failed');
      res.destroy();
    });
  });
  server.timeout = SOCKET_IDLE_MS;

  async function serve(req: IncomingMessage, res: ServerResponse, client: string, busy: number): Promise<void> {
    if (!o.peers.allows(client)) throw new HttpError(403, 'DENIED', `${client} is not a peer of this node`);
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'UNSUPPORTED', `${req.method ?? ''} is not served: this is a read-only registry for peers`);
    if (busy >= PER_CLIENT_REQUESTS) throw new HttpError(429, 'TOOMANYREQUESTS', `more than ${PER_CLIENT_REQUESTS} requests at once from ${client}`);
    const path = (req.url ?? '').split('?')[0] ?? '';
    if (path === '/v2/' || path === '/v2') {
      send(res, req, 200, { 'content-type': 'application/json', 'content-length': '2' }, '{}');
      return;
    }
    const m = ROUTE_RE.exec(path);
    if (!m) throw new HttpError(404, 'NOT_FOUND', `no such endpoint ${path}: peers serve /v2/<name>/blobs/<digest>`);
    const [, name = '', kind, reference = ''] = m;
    if (!NAME_RE.test(name)) throw new HttpError(400, 'NAME_INVALID', `repository name ${JSON.stringify(name)} is not valid`);
    if (kind === 'manifests') throw new HttpError(404, 'MANIFEST_UNKNOWN', `manifest ${reference}: peers serve blobs only; fetch manifests from the registry`);
    if (!isDigest(reference)) throw new HttpError(400, 'DIGEST_INVALID', `${JSON.stringify(reference)} is not a sha256 digest (sha256:<64 lowercase hex>)`);
    await serveBlob(req, res, reference);
  }

  async function serveBlob(req: IncomingMessage, res: ServerResponse, digest: string): Promise<void> {
    const size = await o.content.size(digest);
    if (size === undefined) throw new HttpError(404, 'BLOB_UNKNOWN', `blob ${digest} is not on this node`);
    const headers = { 'content-type': 'application/octet-stream', 'content-length': String(size), 'docker-content-digest': digest };
    if (req.method === 'HEAD') {
      send(res, req, 200, headers);
      return;
    }
    let body;
    try {
      body = await o.content.createReadStream(digest);
    } catch {
      throw new HttpError(404, 'BLOB_UNKNOWN', `blob ${digest} is not on this node`);
    }
    res.writeHead(200, headers);
    // Streamed from disk with back-pressure: a blob is never held in memory.
    await pipeline(body, res);
  }

  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.listen.port, o.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => o.log.warn({ err: errorMessage(err) }, 'p2p server error'));
  const address = formatPeer(o.listen);
  o.log.info({ address }, 'p2p: serving content to peers');
  return {
    address,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

function send(res: ServerResponse, req: IncomingMessage, status: number, headers: Record<string, string>, body?: string | Buffer): void {
  res.writeHead(status, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** An OCI distribution error body, so registry clients show the reason. */
function sendError(res: ServerResponse, err: HttpError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ errors: [{ code: err.code, message: err.message }] });
  res.writeHead(err.status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...(err.status === 429 ? { 'retry-after': '1' } : {}) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
