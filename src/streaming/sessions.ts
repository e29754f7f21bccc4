// The upgraded half of the streaming server: SPDY/3.1 and WebSocket sessions running exec, attach
// and port-forward against the StreamingBackend. server.ts loads this module on the first upgrade,
// not at start: an idle berthd holds neither ws, the SPDY codec nor the session code (measured:
// ~1 MB of idle RSS).
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import type { SessionIo, StreamingBackend } from './backend.ts';
import type { StreamRequest } from './tokens.ts';
import { protocolVersion, type CommandOutcome } from './protocol.ts';
import { SpdySession } from './spdy/session.ts';
import { ChannelSocket } from './websocket/channels.ts';
import { acceptSpdyCommand, channelsFromWebSocket, serveCommand, type CommandChannels } from './remote-command.ts';
import { serveSpdyPortForward, serveWebSocketPortForward } from './port-forward.ts';

export interface SessionOptions {
  backend: StreamingBackend;
  log: Logger;
  /** A session with no traffic for this long is closed; 0 = never. */
  idleTimeoutMs: number;
  /** How long a client has to open its streams after the upgrade. */
  streamCreationTimeoutMs: number;
  /** Called with each session's run and the way to cut it, so the server can stop it. */
  track(run: Promise<void>, cut: () => void): void;
}

export class Sessions {
  private readonly opts: SessionOptions;
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });

  constructor(opts: SessionOptions) {
    this.opts = opts;
  }

  /** Runs a SPDY/3.1 session on a socket already answered with 101 Switching Protocols. */
  spdy(socket: Duplex, head: Buffer, protocol: string, request: StreamRequest): void {
    const { backend, log } = this.opts;
    const session = new SpdySession(socket, { role: 'server', idleTimeoutMs: this.opts.idleTimeoutMs });
    let run: Promise<void>;
    if (request.kind === 'portforward') {
      run = serveSpdyPortForward(session, { podSandboxId: request.podSandboxId, backend, log }, this.opts.streamCreationTimeoutMs);
    } else {
      const { gone, channels } = acceptSpdyCommand(session, protocolVersion(protocol), request, this.opts.streamCreationTimeoutMs);
      run = this.runCommand(channels, gone, request);
    }
    this.opts.track(run, () => session.destroy('berthd is shutting down'));
    session.feed(head);
  }

  /** Completes a WebSocket upgrade whose protocol (and, for port-forward, ports) the server accepted. */
  webSocket(req: IncomingMessage, socket: Duplex, head: Buffer, protocol: string, ports: number[], request: StreamRequest): void {
    const { backend, log } = this.opts;
    this.wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      const channels = new ChannelSocket(ws, {
        base64: protocol.includes('base64'),
        closeSignal: protocolVersion(protocol || 'channel.k8s.io') >= 5,
        idleTimeoutMs: this.opts.idleTimeoutMs,
      });
      let run: Promise<void>;
      if (request.kind === 'portforward') {
        run = serveWebSocketPortForward(channels, ports, { podSandboxId: request.podSandboxId, backend, log });
      } else {
        const ch = channelsFromWebSocket(channels, protocolVersion(protocol || 'channel.k8s.io'), request);
        run = this.runCommand(Promise.resolve(ch), ch.gone, request);
      }
      this.opts.track(run, () => channels.destroy());
    });
  }

  close(): void {
    this.wss.close();
  }

  /** An exec's process starts before the client has opened its streams (see StreamingBackend.exec). */
  private runCommand(channels: Promise<CommandChannels>, gone: AbortSignal, request: Extract<StreamRequest, { kind: 'exec' | 'attach' }>): Promise<void> {
    const run = async (io: Promise<SessionIo>, signal: AbortSignal): Promise<CommandOutcome> => {
      if (request.kind === 'exec') return this.opts.backend.exec(request.containerId, request.cmd, request, io, signal);
      await this.opts.backend.attach(request.containerId, await io, signal);
      return { exitCode: 0 };
    };
    return serveCommand(channels, gone, run, this.opts.log);
  }
}
