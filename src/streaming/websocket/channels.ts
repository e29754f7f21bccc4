// Kubernetes channel framing over one WebSocket (the `channel.k8s.io` family): every message
// starts with its channel number, a byte (binary) or an ASCII digit followed by base64 (the
// `base64.` forms). v5 adds a close message, [255, channel], that ends one channel's input.
import { Readable, Writable } from 'node:stream';
import type { WebSocket, RawData } from 'ws';

export const CLOSE_CHANNEL = 255;
/** Output waits for the client once this much is queued in the WebSocket. */
const SEND_HIGH_WATER = 1 << 20;

export interface ChannelSocketOptions {
  /** Text frames with base64 payloads instead of binary frames. */
  base64: boolean;
  /** v5.channel.k8s.io: the client may close a channel with [255, channel]. */
  closeSignal: boolean;
  /** Close after this long with no message either way; 0 = never. */
  idleTimeoutMs: number;
}

export class ChannelSocket {
  private readonly ws: WebSocket;
  private readonly opts: ChannelSocketOptions;
  private readonly inputs = new Map<number, Readable>();
  private readonly endedInputs = new Set<number>();
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly ac = new AbortController();
  /** Fires when the WebSocket is gone, whoever closed it. */
  readonly gone: AbortSignal = this.ac.signal;

  constructor(ws: WebSocket, opts: ChannelSocketOptions) {
    this.ws = ws;
    this.opts = opts;
    if (opts.idleTimeoutMs > 0) {
      this.idleTimer = setTimeout(() => ws.terminate(), opts.idleTimeoutMs);
      this.idleTimer.unref();
    }
    ws.on('message', (data: RawData, isBinary: boolean) => this.onMessage(data, isBinary));
    ws.on('error', () => ws.terminate());
    ws.on('close', () => {
      clearTimeout(this.idleTimer);
      for (const channel of this.inputs.keys()) this.endInput(channel);
      this.ac.abort(new Error('the WebSocket closed'));
    });
  }

  /** The client's bytes on `channel`, ending when the client closes it (v5) or the socket. */
  input(channel: number): Readable {
    let r = this.inputs.get(channel);
    if (!r) {
      r = new Readable({ read: () => this.ws.resume(), highWaterMark: 64 * 1024 });
      this.inputs.set(channel, r);
      if (this.gone.aborted) this.endInput(channel);
    }
    return r;
  }

  private endInput(channel: number): void {
    const input = this.inputs.get(channel);
    if (!input || this.endedInputs.has(channel)) return;
    this.endedInputs.add(channel);
    input.push(null);
  }

  /** A writable whose bytes go to the client on `channel`; end() sends nothing (no close in v4). */
  output(channel: number): Writable {
    return new Writable({
      highWaterMark: 64 * 1024,
      write: (chunk: Buffer, _enc, cb) => this.send(channel, chunk, cb),
    });
  }

  /** Sends one message on a channel; `cb` runs when the client may be sent more. */
  send(channel: number, data: Buffer, cb: (err?: Error | null) => void = () => {}): void {
    if (this.ws.readyState !== this.ws.OPEN) return cb();
    this.idleTimer?.refresh();
    let frame: Buffer | string;
    if (this.opts.base64) frame = String.fromCharCode(48 + channel) + data.toString('base64');
    else {
      frame = Buffer.allocUnsafe(data.length + 1);
      frame[0] = channel;
      data.copy(frame, 1);
    }
    const waitForIt = this.ws.bufferedAmount > SEND_HIGH_WATER;
    this.ws.send(frame, { binary: !this.opts.base64 }, () => {
      if (waitForIt) cb();
    });
    if (!waitForIt) cb();
  }

  close(): void {
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) this.ws.close(1000);
  }

  destroy(): void {
    this.ws.terminate();
  }

  private onMessage(raw: RawData, isBinary: boolean): void {
    this.idleTimer?.refresh();
    let data = Array.isArray(raw) ? Buffer.concat(raw) : Buffer.isBuffer(raw) ? raw : Buffer.from(raw);
    if (data.length === 0) return;
    let channel = data[0] as number;
    if (this.opts.base64 && !isBinary) {
      channel -= 48;
      data = Buffer.from(data.subarray(1).toString('latin1'), 'base64');
    } else data = data.subarray(1);
    if (this.opts.closeSignal && channel === CLOSE_CHANNEL) {
      this.endInput(data[0] as number);
      return;
    }
    const input = this.inputs.get(channel);
    // Messages for channels nobody reads (output channels, unrequested stdin) are dropped.
    if (input && !this.endedInputs.has(channel) && data.length > 0 && !input.push(data)) this.ws.pause();
  }
}
