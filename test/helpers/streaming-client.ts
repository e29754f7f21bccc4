// berth's own client for the Kubernetes streaming protocols, as kubectl and crictl speak them:
// SPDY/3.1 (remotecommand v1–v4, portforward.k8s.io) and WebSocket (channel.k8s.io v4/v5). Tests
// and the streaming benchmark drive the server with it.
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { WebSocket } from 'ws';
import { SpdySession, type SpdyStream } from '../../src/streaming/spdy/session.ts';
import type { TerminalSize } from '../../src/streaming/backend.ts';

export interface UpgradeRefusal {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
}

export class UpgradeRefused extends Error {
  readonly refusal: UpgradeRefusal;
  constructor(r: UpgradeRefusal) {
    super(`upgrade refused: HTTP ${r.status}: ${r.body.trim()}`);
    this.refusal = r;
  }
}

/** Upgrades to SPDY/3.1 offering `protocols`; resolves with the session and the chosen protocol. */
export function connectSpdy(url: string, protocols: string[], opts: { method?: string; flowControl?: boolean } = {}): Promise<{ session: SpdySession; protocol: string }> {
  const u = new URL(url);
  const make = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = make(u, {
      method: opts.method ?? 'POST',
      headers: { Connection: 'Upgrade', Upgrade: 'SPDY/3.1', 'X-Stream-Protocol-Version': protocols },
      rejectUnauthorized: false,
    });
    req.on('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => {
      const session = new SpdySession(socket, { role: 'client' });
      // Like a flow-controlling SPDY peer (and unlike Go's spdystream), announce a window.
      if (opts.flowControl) session.sendSettings(256 * 1024);
      session.feed(head);
      resolve({ session, protocol: String(res.headers['x-stream-protocol-version'] ?? '') });
    });
    req.on('response', (res: IncomingMessage) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => reject(new UpgradeRefused({ status: res.statusCode ?? 0, headers: res.headers, body })));
    });
    req.on('error', reject);
    req.end();
  });
}

export function collect(stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('close', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

export interface CommandOptions {
  /** Bytes for stdin (then EOF), a stream, or true for a stdin stream the caller writes. */
  stdin?: Buffer | Readable | boolean;
  stdout?: boolean;
  stderr?: boolean;
  tty?: boolean;
  /** Sizes sent on the resize stream right after it opens. */
  resize?: TerminalSize[];
  protocols?: string[];
}

export interface CommandResult {
  stdout: Buffer;
  stderr: Buffer;
  /** The error stream's text: JSON Status (v4+) or a message (older). */
  error: string;
  /** From a v4 Status: 0 on Success, the NonZeroExitCode cause otherwise; undefined if unknown. */
  exitCode: number | undefined;
}

export function exitCodeOf(errorText: string): number | undefined {
  if (errorText === '') return 0;
  try {
    const status = JSON.parse(errorText) as { status?: string; reason?: string; details?: { causes?: Array<{ reason?: string; message?: string }> } };
    if (status.status === 'Success') return 0;
    if (status.reason !== 'NonZeroExitCode') return undefined;
    const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
    return cause?.message !== undefined ? Number(cause.message) : undefined;
  } catch {
    return undefined;
  }
}

/** A started SPDY exec/attach: write to `stdin` while it runs; `done` settles with the result. */
export interface SpdyCommand {
  session: SpdySession;
  protocol: string;
  stdin: SpdyStream | undefined;
  resize: SpdyStream | undefined;
  /** Stdout received so far, while the command runs. */
  stdoutSoFar(): string;
  done: Promise<CommandResult>;
}

/** Opens the streams the way client-go's v4 executor does: error, stdin, stdout, stderr, resize. */
export async function startSpdyCommand(url: string, opts: CommandOptions): Promise<SpdyCommand> {
  const wantStdout = opts.stdout ?? true;
  const wantStderr = (opts.stderr ?? !opts.tty) && !opts.tty;
  const { session, protocol } = await connectSpdy(url, opts.protocols ?? ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io']);
  const error = session.openStream({ streamtype: 'error' });
  const stdin = opts.stdin !== undefined && opts.stdin !== false ? session.openStream({ streamtype: 'stdin' }) : undefined;
  const stdout = wantStdout ? session.openStream({ streamtype: 'stdout' }) : undefined;
  const stderr = wantStderr ? session.openStream({ streamtype: 'stderr' }) : undefined;
  const resize = opts.tty ? session.openStream({ streamtype: 'resize' }) : undefined;
  const opened = [error, stdin, stdout, stderr, resize].filter((s): s is SpdyStream => s !== undefined);
  await Promise.all(opened.map((s) => s.replied));
  // We never write on these: FIN them so the server side sees them finished.
  for (const s of [error, stdout, stderr]) s?.end();
  if (stdin && Buffer.isBuffer(opts.stdin)) stdin.end(opts.stdin);
  else if (stdin && opts.stdin instanceof Readable) opts.stdin.pipe(stdin);
  if (resize) for (const size of opts.resize ?? []) resize.write(`${JSON.stringify({ Width: size.width, Height: size.height })}\n`);
  const live: Buffer[] = [];
  stdout?.on('data', (c: Buffer) => live.push(c));
  const done = (async (): Promise<CommandResult> => {
    const [out, err, errorText] = await Promise.all([
      stdout ? collect(stdout) : Buffer.alloc(0),
      stderr ? collect(stderr) : Buffer.alloc(0),
      collect(error).then((b) => b.toString()),
    ]);
    resize?.end();
    session.close();
    return { stdout: out, stderr: err, error: errorText, exitCode: protocol.startsWith('v4.') ? exitCodeOf(errorText) : undefined };
  })();
  return { session, protocol, stdin, resize, stdoutSoFar: () => Buffer.concat(live).toString(), done };
}

export async function spdyCommand(url: string, opts: CommandOptions): Promise<CommandResult> {
  return (await startSpdyCommand(url, opts)).done;
}

/** One forwarded connection over a SPDY port-forward session. */
export async function spdyForward(session: SpdySession, port: number, requestId: number): Promise<{ data: SpdyStream; error: SpdyStream; errorText: Promise<string> }> {
  const headers = { port: String(port), requestid: String(requestId) };
  const error = session.openStream({ ...headers, streamtype: 'error' });
  const data = session.openStream({ ...headers, streamtype: 'data' });
  await Promise.all([error.replied, data.replied]);
  error.end();
  return { data, error, errorText: collect(error).then((b) => b.toString()) };
}

// ---- WebSocket ----

export interface ChannelClient {
  ws: WebSocket;
  protocol: string;
  /** Every message since the upgrade (none is lost between 'open' and the caller's listener). */
  onMessage(listener: (data: Buffer) => void): void;
}

export function connectWebSocket(url: string, protocols: string[]): Promise<ChannelClient> {
  const wsUrl = url.replace(/^http/, 'ws');
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl, protocols, { rejectUnauthorized: false, perMessageDeflate: false });
    const backlog: Buffer[] = [];
    let listener: ((data: Buffer) => void) | undefined;
    ws.on('message', (data: Buffer) => (listener ? listener(data) : backlog.push(data)));
    const onMessage = (l: (data: Buffer) => void): void => {
      listener = l;
      for (const m of backlog.splice(0)) l(m);
    };
    ws.once('open', () => resolve({ ws, protocol: ws.protocol, onMessage }));
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => reject(new UpgradeRefused({ status: res.statusCode ?? 0, headers: res.headers, body })));
    });
    ws.once('error', reject);
  });
}

/** The refusal of an upgrade that must be refused; fails when it succeeds. */
export async function refusal(attempt: Promise<unknown>): Promise<UpgradeRefusal> {
  try {
    await attempt;
  } catch (err) {
    if (err instanceof UpgradeRefused) return err.refusal;
    throw err;
  }
  throw new Error('the upgrade succeeded but should have been refused');
}

/** Runs a command over the WebSocket channel protocol; v5 closes stdin with [255, 0]. */
export async function wsCommand(url: string, opts: CommandOptions & { protocol?: string }): Promise<CommandResult> {
  const { ws, protocol, onMessage } = await connectWebSocket(url, [opts.protocol ?? 'v5.channel.k8s.io']);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let errorText = '';
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  onMessage((raw: Buffer) => {
    const channel = raw[0];
    const data = raw.subarray(1);
    if (channel === 1) out.push(data);
    else if (channel === 2) err.push(data);
    else if (channel === 3) errorText += data.toString();
  });
  for (const size of opts.tty ? (opts.resize ?? []) : []) ws.send(Buffer.concat([Buffer.from([4]), Buffer.from(JSON.stringify({ Width: size.width, Height: size.height }))]));
  if (Buffer.isBuffer(opts.stdin)) {
    ws.send(Buffer.concat([Buffer.from([0]), opts.stdin]));
    if (protocol.startsWith('v5.')) ws.send(Buffer.from([255, 0]));
  }
  await closed;
  return {
    stdout: Buffer.concat(out),
    stderr: Buffer.concat(err),
    error: errorText,
    exitCode: protocol.startsWith('v4.') || protocol.startsWith('v5.') ? exitCodeOf(errorText) : undefined,
  };
}
