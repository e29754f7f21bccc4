// The streaming server: the HTTP(S) endpoint behind the URLs that Exec, Attach and PortForward
// return. It trades a single-use token for the request it stands for, upgrades the connection to
// SPDY/3.1 or WebSocket, and runs the session against the runtime's StreamingBackend (sessions.ts,
// loaded on the first upgrade).
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { StreamingBackend } from './backend.ts';
import { TokenCache, type StreamRequest } from './tokens.ts';
import {
  HEADER_ACCEPTED_VERSIONS,
  HEADER_PROTOCOL_VERSION,
  negotiate,
  PORT_FORWARD_SPDY_PROTOCOLS,
  PORT_FORWARD_WS_PROTOCOLS,
  REMOTE_COMMAND_SPDY_PROTOCOLS,
  REMOTE_COMMAND_WS_PROTOCOLS,
} from './protocol.ts';
import type { Sessions } from './sessions.ts';

// Not an ES import: that would load Node's bundled undici for node:http's WebSocket export
// (see src/image/registry/http.ts).
const { createServer: createHttpServer } = process.getBuiltinModule('node:http');
import { errorMessage, invalidArgument } from '../util/errors.ts';
import { ConfigError, type BerthConfig } from '../config/config.ts';
import { readFile } from 'node:fs/promises';

export interface StreamingServerOptions {
  /** Listen address; URLs name 127.0.0.1 when this is a wildcard. */
  address: string;
  /** 0 picks a free port. */
  port: number;
  tls?: { cert: Buffer; key: Buffer };
  /** A session with no traffic for this long is closed; 0 = never. */
  idleTimeoutMs: number;
  /** How long a URL stays valid. */
  tokenTtlMs?: number;
  /** How long a client has to open its streams after the upgrade. */
  streamCreationTimeoutMs?: number;
}

const DEFAULT_TOKEN_TTL_MS = 60_000;
const DEFAULT_STREAM_CREATION_TIMEOUT_MS = 30_000;
const PATHS = { exec: 'exec', attach: 'attach', portforward: 'portforward' } as const;

export type ExecParams = Omit<Extract<StreamRequest, { kind: 'exec' }>, 'kind'>;
export type AttachParams = Omit<Extract<StreamRequest, { kind: 'attach' }>, 'kind'>;

/** Writes a plain HTTP answer on a socket that was not upgraded, then closes it. */
function refuse(socket: Duplex, status: number, reason: string, message: string, headers: Record<string, string> = {}): void {
  const body = `${message}\n`;
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}Connection: close\r\n\r\n${body}`,
  );
}

function headerValues(req: IncomingMessage, name: string): string[] {
  const v = req.headers[name];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

function checkStdio(rpc: string, p: { stdin: boolean; stdout: boolean; stderr: boolean; tty: boolean }): void {
  if (!p.stdin && !p.stdout && !p.stderr) throw invalidArgument(`${rpc} needs at least one of stdin, stdout and stderr`);
  if (p.tty && p.stderr) throw invalidArgument(`${rpc} with tty cannot also have stderr: a terminal has one output stream; set stderr=false`);
}

export class StreamingServer {
  private readonly opts: Required<Omit<StreamingServerOptions, 'tls'>> & Pick<StreamingServerOptions, 'tls'>;
  private readonly backend: StreamingBackend;
  private readonly log: Logger;
  private readonly tokens: TokenCache;
  private readonly http: Server;
  /** The session code, loaded by the first upgrade. */
  private sessionsP: Promise<Sessions> | undefined;
  /** Sessions in progress: stop() cuts them and waits for their backends to let go. */
  private readonly sessions = new Map<Promise<void>, () => void>();
  private readonly sockets = new Set<Duplex>();
  private base = '';

  private constructor(opts: StreamingServerOptions, backend: StreamingBackend, log: Logger) {
    this.opts = {
      ...opts,
      tokenTtlMs: opts.tokenTtlMs ?? DEFAULT_TOKEN_TTL_MS,
      streamCreationTimeoutMs: opts.streamCreationTimeoutMs ?? DEFAULT_STREAM_CREATION_TIMEOUT_MS,
    };
    this.backend = backend;
    this.log = log;
    this.tokens = new TokenCache(this.opts.tokenTtlMs);
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => this.onPlainRequest(req, res);
    this.http = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, onRequest) : createHttpServer(onRequest);
    this.http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    this.http.on('connection', (socket: Duplex) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    this.http.on('clientError', (_err, socket: Duplex) => socket.destroy());
  }

  static async start(opts: StreamingServerOptions, backend: StreamingBackend, log: Logger): Promise<StreamingServer> {
    const server = new StreamingServer(opts, backend, log);
    await new Promise<void>((resolve, reject) => {
      server.http.once('error', reject);
      server.http.listen(opts.port, opts.address, () => {
        server.http.off('error', reject);
        resolve();
      });
    });
    const { port } = server.http.address() as AddressInfo;
    const wildcard = opts.address === '0.0.0.0' || opts.address === '::' || opts.address === '';
    const host = wildcard ? '127.0.0.1' : opts.address.includes(':') ? `[${opts.address}]` : opts.address;
    server.base = `${opts.tls ? 'https' : 'http'}://${host}:${port}`;
    return server;
  }

  /** Where the server listens, e.g. http://127.0.0.1:40123. */
  get baseUrl(): string {
    return this.base;
  }

  /** A one-time URL for running a command in a container (the Exec RPC's answer). */
  execUrl(p: ExecParams): string {
    if (p.cmd.length === 0) throw invalidArgument('Exec needs a command (cmd is empty)');
    checkStdio('Exec', p);
    return this.url({ kind: 'exec', ...p, containerId: this.backend.resolveContainer(p.containerId) });
  }

  /** A one-time URL joining a container's main process stdio (the Attach RPC's answer). */
  attachUrl(p: AttachParams): string {
    checkStdio('Attach', p);
    return this.url({ kind: 'attach', ...p, containerId: this.backend.resolveContainer(p.containerId) });
  }

  /** A one-time URL forwarding connections into a pod (the PortForward RPC's answer). */
  portForwardUrl(podSandboxId: string, ports: number[]): string {
    return this.url({ kind: 'portforward', podSandboxId: this.backend.resolveSandbox(podSandboxId), ports });
  }

  private url(request: StreamRequest): string {
    return `${this.base}/${PATHS[request.kind]}/${this.tokens.put(request)}`;
  }

  /** Stops listening, cuts every session and waits for their backends to let go. */
  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    for (const cut of this.sessions.values()) cut();
    for (const socket of this.sockets) socket.destroy();
    await Promise.allSettled([...this.sessions.keys()]);
    if (this.sessionsP) (await this.sessionsP).close();
    await closed;
  }

  private track(run: Promise<void>, cut: () => void): void {
    this.sessions.set(run, cut);
    void run.finally(() => this.sessions.delete(run));
  }

  /** Parses /<kind>/<token> and takes the token; undefined (after answering 404) when it is not good. */
  private takeRequest(url: string | undefined): { request?: StreamRequest; status?: [number, string, string] } {
    const m = /^\/(exec|attach|portforward)\/([A-Za-z0-9_-]+)(?:\?.*)?$/.exec(url ?? '');
    if (!m) return { status: [404, 'Not Found', 'not a streaming URL: expected /exec/, /attach/ or /portforward/ and a token'] };
    const request = this.tokens.take(m[2] as string);
    if (!request || request.kind !== m[1]) {
      return { status: [404, 'Not Found', 'unknown or expired streaming token: URLs work once and for about a minute; call Exec, Attach or PortForward again'] };
    }
    return { request };
  }

  private onPlainRequest(req: IncomingMessage, res: ServerResponse): void {
    const { request, status } = this.takeRequest(req.url);
    const [code, , message] = status ?? [400, 'Bad Request', `this ${request?.kind} URL needs a connection upgrade to SPDY/3.1 or websocket`];
    res.writeHead(code, { 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close' });
    res.end(`${message}\n`);
  }

  /**
   * Hands an upgraded socket to the session code once it is loaded. Until then the socket's data
   * waits in its buffer: after an upgrade Node leaves the socket neither flowing nor paused.
   */
  private withSessions(socket: Duplex, fn: (s: Sessions) => void): void {
    this.sessionsP ??= import('./sessions.ts').then(
      ({ Sessions }) =>
        new Sessions({
          backend: this.backend,
          log: this.log,
          idleTimeoutMs: this.opts.idleTimeoutMs,
          streamCreationTimeoutMs: this.opts.streamCreationTimeoutMs,
          track: (run, cut) => this.track(run, cut),
        }),
    );
    this.sessionsP.then(
      (s) => {
        // A client that hung up while the code loaded has nothing left to serve.
        if (!socket.destroyed) fn(s);
      },
      (err: unknown) => {
        this.sessionsP = undefined;
        this.log.error({ err: errorMessage(err) }, 'cannot load the streaming session code');
        socket.destroy();
      },
    );
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const { request, status } = this.takeRequest(req.url);
    if (!request) {
      const [code, reason, message] = status as [number, string, string];
      return refuse(socket, code, reason, message);
    }
    const upgrade = (req.headers.upgrade ?? '').toLowerCase();
    if (upgrade === 'websocket') return this.upgradeWebSocket(req, socket, head, request);
    if (upgrade === 'spdy/3.1') return this.upgradeSpdy(req, socket, head, request);
    refuse(socket, 400, 'Bad Request', `unable to upgrade: Upgrade must be SPDY/3.1 or websocket (got ${JSON.stringify(req.headers.upgrade ?? '')})`);
  }

  private upgradeSpdy(req: IncomingMessage, socket: Duplex, head: Buffer, request: StreamRequest): void {
    const offered = headerValues(req, HEADER_PROTOCOL_VERSION);
    const supported = request.kind === 'portforward' ? PORT_FORWARD_SPDY_PROTOCOLS : REMOTE_COMMAND_SPDY_PROTOCOLS;
    if (offered.length === 0) return refuse(socket, 400, 'Bad Request', `unable to upgrade: X-Stream-Protocol-Version is required (one of ${supported.join(', ')})`);
    const protocol = negotiate(offered, supported);
    if (!protocol) {
      return refuse(socket, 403, 'Forbidden', `unable to upgrade: unable to negotiate protocol: client supports ${offered.join(', ')}, server accepts ${supported.join(', ')}`, {
        [HEADER_ACCEPTED_VERSIONS]: supported.join(', '),
      });
    }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ${protocol}\r\n\r\n`);
    this.withSessions(socket, (s) => s.spdy(socket, head, protocol, request));
  }

  private upgradeWebSocket(req: IncomingMessage, socket: Duplex, head: Buffer, request: StreamRequest): void {
    const supported = request.kind === 'portforward' ? PORT_FORWARD_WS_PROTOCOLS : REMOTE_COMMAND_WS_PROTOCOLS;
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim()).filter((p) => p.length > 0);
    const protocol = offered.length === 0 ? '' : negotiate(offered, supported);
    if (protocol === undefined) {
      return refuse(socket, 400, 'Bad Request', `requested protocol(s) are not supported: ${offered.join(', ')}; supports ${supported.join(', ')}`);
    }
    let ports: number[] = [];
    if (request.kind === 'portforward') {
      const query = new URL(req.url ?? '/', 'http://x').searchParams.getAll('port').flatMap((p) => p.split(','));
      const parsed = query.map((p) => (/^\d{1,5}$/.test(p) ? Number(p) : NaN));
      if (parsed.some((p) => !(p >= 1 && p <= 65535))) return refuse(socket, 400, 'Bad Request', `port query parameters must be numbers from 1 to 65535 (got ${query.join(', ')})`);
      ports = parsed.length > 0 ? parsed : request.ports;
      if (ports.length === 0) return refuse(socket, 400, 'Bad Request', 'query parameter "port" is required');
    }
    this.withSessions(socket, (s) => s.webSocket(req, socket, head, protocol, ports, request));
  }
}

/** Starts the streaming server from berthd's `[streaming]` config. */
export async function startStreamingServer(config: BerthConfig['streaming'], backend: StreamingBackend, log: Logger): Promise<StreamingServer> {
  let tls: StreamingServerOptions['tls'];
  if (config.tlsCert !== undefined && config.tlsKey !== undefined) {
    const read = async (path: string, key: string): Promise<Buffer> => {
      try {
        return await readFile(path);
      } catch (err) {
        throw new ConfigError(`cannot read streaming.${key} ${path}: ${errorMessage(err)}`);
      }
    };
    tls = { cert: await read(config.tlsCert, 'tls_cert'), key: await read(config.tlsKey, 'tls_key') };
  }
  return StreamingServer.start({ address: config.address, port: config.port, tls, idleTimeoutMs: config.idleTimeout * 1000 }, backend, log);
}
