// A SPDY/3.1 session over one upgraded connection: multiplexed streams (each a Node Duplex), PING
// answers, GOAWAY, RST_STREAM, per-stream and session flow control, and an idle timeout. The
// streaming server uses the server role; berth's test client uses the client role.
import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import {
  DEFAULT_WINDOW,
  encodeData,
  encodeGoAway,
  encodePing,
  encodeRstStream,
  encodeSettings,
  encodeSynReply,
  encodeSynStream,
  encodeWindowUpdate,
  FrameParser,
  GoAwayStatus,
  packHeaderBlock,
  RstStatus,
  SETTINGS_INITIAL_WINDOW_SIZE,
  SpdyProtocolError,
  unpackHeaderBlock,
  type Frame,
  type HeaderMap,
} from './frames.ts';
import { HeaderCompressor, HeaderDecompressor } from './header-compression.ts';

/** DATA frames we send carry at most this much, so one busy stream cannot hog the connection. */
const MAX_DATA_CHUNK = 32 * 1024;
/** Received bytes are acknowledged (WINDOW_UPDATE) once this many have been consumed. */
const WINDOW_ACK_THRESHOLD = DEFAULT_WINDOW / 2;
/** After GOAWAY, how long the peer gets to hang up before the socket is cut. */
const CLOSE_GRACE_MS = 2000;

export interface SpdySessionOptions {
  role: 'server' | 'client';
  /** Close the session after this long with no frame in either direction; 0 = never. */
  idleTimeoutMs?: number;
}

/**
 * One SPDY stream. Readable side: the peer's DATA until its FIN; writable side: our DATA, and
 * end() sends FIN. `headers` are the headers the stream was opened with.
 */
export class SpdyStream extends Duplex {
  readonly id: number;
  readonly headers: HeaderMap;
  private readonly session: SpdySession;
  /** Bytes we may still send before the peer's WINDOW_UPDATE (only when the peer does flow control). */
  sendWindow: number;
  private unacked = 0;
  localFin = false;
  remoteFin = false;
  private wasReset = false;
  /** Resolves when the peer answers our SYN_STREAM (client role), rejects when it resets it. */
  readonly replied: Promise<void>;
  private settleReply!: (err?: Error) => void;
  private windowWaiter: (() => void) | undefined;

  constructor(session: SpdySession, id: number, headers: HeaderMap, sendWindow: number) {
    super({ allowHalfOpen: true, highWaterMark: 64 * 1024 });
    this.session = session;
    this.id = id;
    this.headers = headers;
    this.sendWindow = sendWindow;
    this.replied = new Promise<void>((resolve, reject) => {
      this.settleReply = (err) => (err ? reject(err) : resolve());
    });
    this.replied.catch(() => {});
  }

  /** Answers an incoming stream (SYN_REPLY) so the peer may use it. */
  reply(): void {
    this.session.sendReply(this);
  }

  /** Ends both directions at once (RST_STREAM), e.g. for a stream the server does not want. */
  reset(status: number = RstStatus.CANCEL): void {
    if (!this.wasReset) this.session.sendReset(this, status);
    this.onReset();
  }

  get isReset(): boolean {
    return this.wasReset;
  }

  override _read(): void {
    this.session.resumeFor(this);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.session.sendData(this, chunk, false).then(() => cb(), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.wasReset || this.localFin) return cb();
    this.session.sendData(this, Buffer.alloc(0), true).then(() => cb(), cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // A stream destroyed before both sides finished tells the peer, so nothing waits on it.
    if (!this.wasReset && !(this.localFin && this.remoteFin)) this.session.sendReset(this, RstStatus.CANCEL);
    this.wasReset = true;
    this.wakeWindow();
    this.session.forget(this);
    cb(err);
  }

  /** Peer DATA arrived; false when the reader is full (the session then pauses the socket). */
  deliver(data: Buffer): boolean {
    if (this.remoteFin || this.wasReset) return true;
    this.unacked += data.length;
    if (this.unacked >= WINDOW_ACK_THRESHOLD) {
      this.session.ackWindow(this.id, this.unacked);
      this.unacked = 0;
    }
    return data.length === 0 ? true : this.push(data);
  }

  finishRemote(): void {
    if (this.remoteFin) return;
    this.remoteFin = true;
    this.push(null);
    this.session.maybeForget(this);
  }

  onReplied(err?: Error): void {
    this.settleReply(err);
  }

  onReset(): void {
    if (this.wasReset) return;
    this.wasReset = true;
    this.settleReply(new Error(`stream ${this.id} was reset`));
    this.remoteFin = true;
    this.localFin = true;
    this.wakeWindow();
    this.push(null);
    this.destroy();
  }

  waitWindow(): Promise<void> {
    return new Promise((resolve) => {
      this.windowWaiter = resolve;
    });
  }

  wakeWindow(): void {
    const w = this.windowWaiter;
    this.windowWaiter = undefined;
    w?.();
  }
}

/**
 * Server: `on('stream', (s: SpdyStream) => …)` for every stream the peer opens; call s.reply() to
 * accept it or s.reset() to refuse it. Client: openStream(). Either side: close() (GOAWAY, then
 * hang up once the peer has), destroy(). 'close' fires once when the connection is gone.
 */
export class SpdySession extends EventEmitter {
  private readonly socket: Duplex;
  private readonly role: 'server' | 'client';
  private readonly parser = new FrameParser();
  private readonly compressor = new HeaderCompressor();
  private readonly decompressor = new HeaderDecompressor();
  private readonly streams = new Map<number, SpdyStream>();
  private nextStreamId: number;
  private lastPeerStreamId = 0;
  private nextPingId: number;
  private readonly pings = new Map<number, (err?: Error) => void>();
  /**
   * Go's spdystream (kubectl, crictl, the kubelet) neither sends WINDOW_UPDATE nor honours it, so
   * windows bind our sending only once the peer shows it does flow control (SETTINGS with an
   * initial window, or a WINDOW_UPDATE).
   */
  private peerFlowControl = false;
  private initialSendWindow = DEFAULT_WINDOW;
  private sessionSendWindow = DEFAULT_WINDOW;
  private sessionWaiters: Array<() => void> = [];
  private readonly blocked = new Set<SpdyStream>();
  private goneAway = false;
  private closed = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  /** Why the session ended, when it did not end cleanly. */
  closeReason: string | undefined;

  constructor(socket: Duplex, opts: SpdySessionOptions) {
    super();
    this.socket = socket;
    this.role = opts.role;
    this.nextStreamId = opts.role === 'client' ? 1 : 2;
    this.nextPingId = opts.role === 'client' ? 1 : 2;
    if (opts.idleTimeoutMs && opts.idleTimeoutMs > 0) {
      this.idleTimer = setTimeout(() => this.destroy(`no traffic for ${opts.idleTimeoutMs} ms (idle timeout)`), opts.idleTimeoutMs);
      this.idleTimer.unref();
    }
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.destroy());
    socket.on('close', () => this.destroy());
    socket.on('error', (err: Error) => this.destroy(`connection error: ${err.message}`));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Feeds bytes that arrived with the upgrade request, before the socket was handed over. */
  feed(head: Buffer): void {
    if (head.length > 0) this.onData(head);
  }

  /** Client role: opens a stream (SYN_STREAM). Await `stream.replied` for the peer's answer. */
  openStream(headers: HeaderMap, opts: { fin?: boolean } = {}): SpdyStream {
    if (this.closed || this.goneAway) throw new Error('SPDY session is closing; no new streams');
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const stream = new SpdyStream(this, id, headers, this.initialSendWindow);
    this.streams.set(id, stream);
    if (opts.fin) {
      stream.localFin = true;
      stream.end();
    }
    this.writeFrame(encodeSynStream(id, this.compressor.compress(packHeaderBlock(headers)), { fin: opts.fin }));
    return stream;
  }

  /** Round trip of a PING, in milliseconds. */
  ping(): Promise<number> {
    const id = this.nextPingId;
    this.nextPingId += 2;
    const started = performance.now();
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error('SPDY session is closed'));
      this.pings.set(id, (err) => (err ? reject(err) : resolve(performance.now() - started)));
      this.writeFrame(encodePing(id));
    });
  }

  /** Announces our flow-control window (what a flow-controlling client sends first). */
  sendSettings(initialWindow: number): void {
    this.writeFrame(encodeSettings([{ id: SETTINGS_INITIAL_WINDOW_SIZE, value: initialWindow }]));
  }

  /** GOAWAY, then hang up when the peer does, or after a short grace. */
  close(): void {
    if (this.closed) return;
    if (!this.goneAway) {
      this.goneAway = true;
      this.writeFrame(encodeGoAway(this.lastPeerStreamId, GoAwayStatus.OK));
    }
    this.socket.end();
    this.graceTimer = setTimeout(() => this.destroy(), CLOSE_GRACE_MS);
    this.graceTimer.unref();
  }

  destroy(reason?: string): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason ??= reason;
    clearTimeout(this.idleTimer);
    clearTimeout(this.graceTimer);
    for (const s of [...this.streams.values()]) s.onReset();
    for (const answer of this.pings.values()) answer(new Error('SPDY session closed before the PING answer'));
    this.pings.clear();
    this.streams.clear();
    for (const w of this.sessionWaiters) w();
    this.sessionWaiters = [];
    this.socket.destroy();
    this.emit('close', this.closeReason);
  }

  // ---- used by SpdyStream ----

  sendReply(stream: SpdyStream): void {
    this.writeFrame(encodeSynReply(stream.id, this.compressor.compress(packHeaderBlock({}))));
  }

  sendReset(stream: SpdyStream, status: number): void {
    if (!this.closed) this.writeFrame(encodeRstStream(stream.id, status));
    this.forget(stream);
  }

  ackWindow(streamId: number, bytes: number): void {
    if (this.closed) return;
    this.writeFrame(encodeWindowUpdate(streamId, bytes));
    this.writeFrame(encodeWindowUpdate(0, bytes));
  }

  async sendData(stream: SpdyStream, data: Buffer, fin: boolean): Promise<void> {
    let at = 0;
    do {
      if (this.closed || stream.isReset) throw new Error(`SPDY stream ${stream.id} is closed`);
      let n = Math.min(MAX_DATA_CHUNK, data.length - at);
      if (this.peerFlowControl && n > 0) {
        while (!this.closed && !stream.isReset && (stream.sendWindow <= 0 || this.sessionSendWindow <= 0)) {
          await (stream.sendWindow <= 0 ? stream.waitWindow() : new Promise<void>((r) => this.sessionWaiters.push(r)));
        }
        if (this.closed || stream.isReset) throw new Error(`SPDY stream ${stream.id} is closed`);
        n = Math.min(n, stream.sendWindow, this.sessionSendWindow);
        stream.sendWindow -= n;
        this.sessionSendWindow -= n;
      }
      const last = at + n >= data.length;
      const ok = this.writeFrame(encodeData(stream.id, data.subarray(at, at + n), fin && last));
      at += n;
      if (!ok) await this.drained();
    } while (at < data.length);
    if (fin) {
      stream.localFin = true;
      this.maybeForget(stream);
    }
  }

  resumeFor(stream: SpdyStream): void {
    if (this.blocked.delete(stream) && this.blocked.size === 0 && !this.closed) this.socket.resume();
  }

  maybeForget(stream: SpdyStream): void {
    if (stream.localFin && stream.remoteFin) this.forget(stream);
  }

  forget(stream: SpdyStream): void {
    if (this.streams.get(stream.id) === stream) this.streams.delete(stream.id);
    this.resumeFor(stream);
  }

  // ---- frame I/O ----

  private touch(): void {
    this.idleTimer?.refresh();
  }

  /** Writes a frame; false when the socket buffer is full. */
  private writeFrame(frame: Buffer): boolean {
    if (this.closed || this.socket.writableEnded) return true;
    this.touch();
    return this.socket.write(frame);
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.off('close', done);
        resolve();
      };
      this.socket.once('drain', done);
      this.once('close', done);
    });
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.touch();
    let frames: Frame[];
    try {
      frames = this.parser.push(chunk);
    } catch (err) {
      this.protocolError(err as Error);
      return;
    }
    try {
      for (const frame of frames) this.handle(frame);
    } catch (err) {
      this.protocolError(err as Error);
    }
  }

  private protocolError(err: Error): void {
    if (this.closed) return;
    if (err instanceof SpdyProtocolError) this.socket.write(encodeGoAway(this.lastPeerStreamId, GoAwayStatus.PROTOCOL_ERROR));
    this.destroy(`SPDY protocol error: ${err.message}`);
  }

  private handle(frame: Frame): void {
    if (this.closed) return;
    switch (frame.type) {
      case 'data': {
        const stream = this.streams.get(frame.streamId);
        if (!stream) {
          // DATA for a stream we already closed is normal after a reset; anything else is not.
          if (frame.streamId > Math.max(this.lastPeerStreamId, this.nextStreamId)) this.writeFrame(encodeRstStream(frame.streamId, RstStatus.INVALID_STREAM));
          return;
        }
        if (!stream.deliver(frame.data)) {
          this.blocked.add(stream);
          this.socket.pause();
        }
        if (frame.fin) stream.finishRemote();
        return;
      }
      case 'syn_stream': {
        const headers = unpackHeaderBlock(this.decompressor.decompress(frame.block));
        const peerParity = this.role === 'server' ? 1 : 0;
        if (frame.streamId % 2 !== peerParity || frame.streamId <= this.lastPeerStreamId) {
          this.writeFrame(encodeRstStream(frame.streamId, RstStatus.PROTOCOL_ERROR));
          return;
        }
        this.lastPeerStreamId = frame.streamId;
        if (this.goneAway) {
          this.writeFrame(encodeRstStream(frame.streamId, RstStatus.REFUSED_STREAM));
          return;
        }
        const stream = new SpdyStream(this, frame.streamId, headers, this.initialSendWindow);
        this.streams.set(frame.streamId, stream);
        if (frame.unidirectional) {
          stream.localFin = true;
          stream.end();
        }
        if (frame.fin) stream.finishRemote();
        this.emit('stream', stream);
        return;
      }
      case 'syn_reply': {
        this.decompressor.decompress(frame.block);
        const stream = this.streams.get(frame.streamId);
        stream?.onReplied();
        if (stream && frame.fin) stream.finishRemote();
        return;
      }
      case 'headers': {
        this.decompressor.decompress(frame.block);
        const stream = this.streams.get(frame.streamId);
        if (stream && frame.fin) stream.finishRemote();
        return;
      }
      case 'rst_stream':
        this.streams.get(frame.streamId)?.onReset();
        return;
      case 'settings':
        for (const e of frame.entries) {
          if (e.id !== SETTINGS_INITIAL_WINDOW_SIZE) continue;
          this.peerFlowControl = true;
          const delta = e.value - this.initialSendWindow;
          this.initialSendWindow = e.value;
          for (const s of this.streams.values()) {
            s.sendWindow += delta;
            if (s.sendWindow > 0) s.wakeWindow();
          }
        }
        return;
      case 'ping': {
        const mine = frame.id % 2 === (this.role === 'client' ? 1 : 0);
        if (!mine) this.writeFrame(encodePing(frame.id));
        else {
          this.pings.get(frame.id)?.();
          this.pings.delete(frame.id);
        }
        return;
      }
      case 'goaway':
        this.goneAway = true;
        if (this.streams.size === 0) this.close();
        return;
      case 'window_update': {
        this.peerFlowControl = true;
        if (frame.streamId === 0) {
          this.sessionSendWindow += frame.delta;
          const waiters = this.sessionWaiters;
          this.sessionWaiters = [];
          for (const w of waiters) w();
        } else {
          const stream = this.streams.get(frame.streamId);
          if (stream) {
            stream.sendWindow += frame.delta;
            stream.wakeWindow();
          }
        }
        return;
      }
      case 'ignored':
        return;
    }
  }
}
