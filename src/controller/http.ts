// The controller's small HTTP endpoints: /healthz (the process answers; never asks the API
// server), /readyz (the role's own readiness check: berthd's CRI Status for the node agent), and
// /metrics in Prometheus text on the opt-in metrics address.
import { createServer, type Server } from 'node:http';
import type { Metrics } from './metrics.ts';

export interface Endpoints {
  ready?: () => Promise<boolean>;
  metrics?: Metrics;
}

/** Parses `HOST:PORT` (`127.0.0.1:9741`, `[::1]:9741`, `0.0.0.0:9741`). */
export function parseAddr(addr: string, flag: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(addr);
  const port = Number(m?.[2]);
  if (!m || !(port >= 0 && port <= 65535)) throw new Error(`${flag} must be HOST:PORT, got ${JSON.stringify(addr)}`);
  return { host: (m[1] ?? '').replace(/^\[|\]$/g, ''), port };
}

export async function serve(addr: { host: string; port: number }, endpoints: Endpoints): Promise<Server> {
  const server = createServer((req, res) => {
    const send = (code: number, body: string, type = 'text/plain'): void => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') return send(200, 'ok\n');
    if (path === '/readyz' && endpoints.ready) {
      endpoints.ready().then(
        (ok) => send(ok ? 200 : 503, ok ? 'ready\n' : 'berthd is not ready\n'),
        (err: unknown) => send(503, `${(err as Error).message}\n`),
      );
      return;
    }
    if (path === '/metrics' && endpoints.metrics) {
      const mem = process.memoryUsage();
      endpoints.metrics.set('process_resident_memory_bytes', {}, mem.rss);
      endpoints.metrics.set('nodejs_heap_used_bytes', {}, mem.heapUsed);
      // What V8 holds from the OS (used, garbage and free pages) and Buffers outside its heap.
      endpoints.metrics.set('nodejs_heap_total_bytes', {}, mem.heapTotal);
      endpoints.metrics.set('nodejs_external_bytes', {}, mem.external);
      return send(200, endpoints.metrics.render(), 'text/plain; version=0.0.4');
    }
    send(404, 'not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(addr.port, addr.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
