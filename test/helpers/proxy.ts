// A fault-injecting HTTP proxy in front of a real registry: counts requests, and can stall or
// corrupt blob downloads. Tests use it to make a crash land mid-pull, or to prove a corrupt blob
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
  close(): Promise<void>;
}

export async function startProxy(targetPort: number): Promise<ProxyControls> {
  let markStalled: () => void = () => undefined;
  const stalled = new Promise<void>((resolve) => {
    markStalled = resolve;
  });
  const open = new Set<ServerResponse>();
  const controls = { requests: [] as string[], stalled } as ProxyControls;

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = req.url ?? '/';
    controls.requests.push(path);
    open.add(res);
    res.once('close', () => open.delete(res));
    const upstream = request(
      { host: '127.0.0.1', port: targetPort, path, method: req.method, headers: { ...req.headers, host: `127.0.0.1:${targetPort}` } },
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
