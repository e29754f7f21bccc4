// A fault-injecting HTTP proxy in front of a real registry: counts requests, can stall or corrupt
// blob downloads, and can hold chosen blobs at a barrier until the test releases them. Tests use it to make a crash land mid-pull, or to prove a corrupt blob
// is caught, without any fake of berth's own code.
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ProxyControls {
  host: string;
  url: string;
  /** Paths requested, in order (e.g. `/v2/x/blobs/sha256:…`). */
  requests: string[];
  /** When set, blob responses send this many bytes and then hang until the proxy closes. */
  stallBlobsAfter?: number;
  /** When set, flips one byte in the middle of every blob body. */
  corruptBlobs?: boolean;
  /** Resolves on the first stalled blob response. */
  stalled: Promise<void>;
  /**
   * Holds every request for these blob digests (not forwarded yet) until the returned function is
   * called, so concurrent pulls are sure to overlap at the registry.
   */
  hold(digests: readonly string[]): () => void;
  /** GET requests seen so far for a blob digest, in any repository. */
  blobGets(digest: string): number;
  /** Responses still open: a stalled download the daemon has not hung up on counts. */
  openResponses(): number;
  close(): Promise<void>;
}

/** A proxy to `targetHost:targetPort` (a registry, or a berthd's p2p server on another loopback address). */
export async function startProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<ProxyControls> {
  let markStalled: () => void = () => undefined;
  const stalled = new Promise<void>((resolve) => {
    markStalled = resolve;
  });
  const open = new Set<ServerResponse>();
  const controls = { requests: [] as string[], stalled } as ProxyControls;
  const gets: string[] = [];
  let held: { digests: Set<string>; open: Promise<void> } | undefined;
  controls.hold = (digests) => {
    let release: () => void = () => undefined;
    const open = new Promise<void>((resolve) => {
      release = resolve;
    });
    held = { digests: new Set(digests), open };
    return () => {
      held = undefined;
      release();
    };
  };
  controls.openResponses = () => open.size;
  controls.blobGets = (digest) => gets.filter((p) => p.endsWith(`/blobs/${digest}`)).length;

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = req.url ?? '/';
    controls.requests.push(path);
    if (req.method === 'GET') gets.push(path);
    open.add(res);
    res.once('close', () => open.delete(res));
    const digest = /\/blobs\/(sha256:[a-f0-9]{64})$/.exec(path)?.[1];
    const barrier = digest !== undefined && held?.digests.has(digest) ? held.open : undefined;
    if (barrier) void barrier.then(() => forward(req, res, path));
    else forward(req, res, path);
  };

  const forward = (req: IncomingMessage, res: ServerResponse, path: string): void => {
    if (res.destroyed) return;
    const upstream = request(
      { host: targetHost, port: targetPort, path, method: req.method, headers: { ...req.headers, host: `${targetHost}:${targetPort}` } },
      (up) => {
        const isBlob = /\/blobs\/sha256:/.test(path) && req.method === 'GET' && up.statusCode === 200;
        if (!isBlob || (controls.stallBlobsAfter === undefined && !controls.corruptBlobs)) {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
          return;
        }
        const chunks: Buffer[] = [];
        up.on('data', (c: Buffer) => chunks.push(c));
        up.on('end', () => {
          const body = Buffer.concat(chunks);
          if (controls.corruptBlobs) {
            const i = Math.floor(body.length / 2);
            body[i] = (body[i] ?? 0) ^ 0xff;
          }
          res.writeHead(200, { ...up.headers, 'content-length': String(body.length) });
          if (controls.stallBlobsAfter !== undefined) {
            res.write(body.subarray(0, controls.stallBlobsAfter));
            markStalled();
            return; // hang: the rest never comes
          }
          res.end(body);
        });
      },
    );
    upstream.on('error', () => {
      res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  };

  const server: Server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  controls.host = `127.0.0.1:${port}`;
  controls.url = `http://127.0.0.1:${port}`;
  controls.close = () =>
    new Promise<void>((resolve) => {
      for (const res of open) res.destroy();
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return controls;
}
