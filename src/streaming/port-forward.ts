// Port-forward sessions: SPDY (`portforward.k8s.io`: one data + one error stream per forwarded
// connection, paired by the requestID header) and WebSocket (a data and an error channel per port
// named in the URL). Each pair becomes one backend connection into the pod's network namespace;
// a failure reaches the client as text on the pair's error stream.
import type { Logger } from 'pino';
import type { StreamingBackend } from './backend.ts';
import type { SpdySession, SpdyStream } from './spdy/session.ts';
import { RstStatus } from './spdy/frames.ts';
import type { ChannelSocket } from './websocket/channels.ts';
import { Duplex } from 'node:stream';
import { errorMessage } from '../util/errors.ts';

interface Target {
  podSandboxId: string;
  backend: StreamingBackend;
  log: Logger;
}

function parsePort(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : undefined;
}

function failureText(t: Target, port: number, err: unknown): string {
  return `error forwarding port ${port} to pod ${t.podSandboxId}, uid : ${errorMessage(err)}`;
}

/** Serves one SPDY port-forward connection until the client closes it. */
export function serveSpdyPortForward(session: SpdySession, t: Target, creationTimeoutMs: number): Promise<void> {
  const pairs = new Map<string, { data?: SpdyStream; error?: SpdyStream; timer: NodeJS.Timeout }>();
  const ac = new AbortController();
  const forwards = new Set<Promise<void>>();

  const forward = async (port: number, data: SpdyStream, error: SpdyStream): Promise<void> => {
    try {
      await t.backend.portForward(t.podSandboxId, port, data, ac.signal);
    } catch (err) {
      if (!ac.signal.aborted) {
        t.log.debug({ port, err: errorMessage(err) }, 'port-forward connection failed');
        if (!error.destroyed) error.write(failureText(t, port, err));
      }
    }
    for (const s of [data, error]) if (!s.destroyed && !s.writableEnded) s.end();
  };

  session.on('stream', (s: SpdyStream) => {
    const type = s.headers.streamtype;
    const port = parsePort(s.headers.port);
    if ((type !== 'data' && type !== 'error') || port === undefined) {
      s.reset(RstStatus.PROTOCOL_ERROR);
      return;
    }
    // Old clients send no requestID: their error stream comes first, its data stream 2 IDs later.
    const requestId = s.headers.requestid ?? String(type === 'error' ? s.id : s.id - 2);
    let pair = pairs.get(requestId);
    if (!pair) {
      const timer = setTimeout(() => {
        const p = pairs.get(requestId);
        pairs.delete(requestId);
        if (p?.error && !p.error.destroyed) p.error.end(`timed out waiting for the ${p.data ? 'error' : 'data'} stream of request ${requestId}`);
        p?.data?.reset();
      }, creationTimeoutMs);
      pair = { timer };
      pairs.set(requestId, pair);
    }
    if (pair[type]) {
      s.reset(RstStatus.PROTOCOL_ERROR);
      return;
    }
    pair[type] = s;
    if (type === 'error') s.resume();
    s.reply();
    if (pair.data && pair.error) {
      clearTimeout(pair.timer);
      pairs.delete(requestId);
      const job = forward(port, pair.data, pair.error);
      forwards.add(job);
      void job.finally(() => forwards.delete(job));
    }
  });

  return new Promise((resolve) => {
    session.once('close', () => {
      ac.abort(new Error('the client closed the port-forward connection'));
      for (const p of pairs.values()) clearTimeout(p.timer);
      void Promise.allSettled([...forwards]).then(() => resolve());
    });
  });
}

/**
 * Serves WebSocket port-forward: channels 2i (data) and 2i+1 (error) for ports[i]. Each channel
 * first carries its port as two little-endian bytes, as Kubernetes clients expect.
 */
export async function serveWebSocketPortForward(socket: ChannelSocket, ports: number[], t: Target): Promise<void> {
  const jobs = ports.map(async (port, i) => {
    const dataChannel = 2 * i;
    const errorChannel = 2 * i + 1;
    const portBytes = Buffer.alloc(2);
    portBytes.writeUInt16LE(port);
    socket.send(dataChannel, portBytes);
    socket.send(errorChannel, portBytes);
    const conn = Duplex.from({ readable: socket.input(dataChannel), writable: socket.output(dataChannel) });
    try {
      await t.backend.portForward(t.podSandboxId, port, conn, socket.gone);
    } catch (err) {
      if (!socket.gone.aborted) socket.send(errorChannel, Buffer.from(failureText(t, port, err)));
    }
  });
  await Promise.allSettled(jobs);
  socket.close();
}
