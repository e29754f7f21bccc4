// The Kubernetes streaming vocabulary shared by the SPDY and WebSocket paths: subprotocol names,
// stream types, the Status object that carries an exit code (remotecommand v4+), and the decoder
// for terminal-resize messages.
import type { TerminalSize } from './backend.ts';

/** remotecommand over SPDY, newest first: the order a client's list is matched against. */
export const REMOTE_COMMAND_SPDY_PROTOCOLS = ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'];
export const PORT_FORWARD_SPDY_PROTOCOLS = ['portforward.k8s.io'];

/** remotecommand over WebSocket; the base64 forms frame text messages for browsers. */
export const REMOTE_COMMAND_WS_PROTOCOLS = [
  'v5.channel.k8s.io',
  'v4.channel.k8s.io',
  'v4.base64.channel.k8s.io',
  'channel.k8s.io',
  'base64.channel.k8s.io',
];
export const PORT_FORWARD_WS_PROTOCOLS = ['v4.channel.k8s.io', 'v4.base64.channel.k8s.io'];

export const HEADER_PROTOCOL_VERSION = 'x-stream-protocol-version';
export const HEADER_ACCEPTED_VERSIONS = 'x-accepted-stream-protocol-versions';

/** Version number of a remotecommand subprotocol name (1 for the unversioned one). */
export function protocolVersion(name: string): number {
  const m = /^v(\d+)\./.exec(name);
  return m ? Number(m[1]) : 1;
}

/**
 * The first client protocol (in the client's order) that the server speaks, as the Kubernetes
 * handshake does; values may be repeated headers or comma-separated.
 */
export function negotiate(clientValues: readonly string[], server: readonly string[]): string | undefined {
  const offered = clientValues.flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v.length > 0);
  return offered.find((p) => server.includes(p));
}

/** How a command ended, as the error stream reports it. */
export type CommandOutcome = { exitCode: number } | { error: string };

/**
 * The error stream's payload. v4 and later: a JSON metav1.Status (exit code in a cause, so
 * clients report it); v1–v3: the failure text only, nothing on success. Empty = write nothing.
 */
export function statusPayload(outcome: CommandOutcome, version: number): Buffer {
  let status: Record<string, unknown>;
  if ('error' in outcome) {
    status = {
      metadata: {},
      status: 'Failure',
      message: `error executing command in container: ${outcome.error}`,
      reason: 'InternalError',
      details: { causes: [{ message: outcome.error }] },
      code: 500,
    };
  } else if (outcome.exitCode === 0) {
    status = { metadata: {}, status: 'Success' };
  } else {
    status = {
      metadata: {},
      status: 'Failure',
      message: `command terminated with non-zero exit code: exit status ${outcome.exitCode}`,
      reason: 'NonZeroExitCode',
      details: { causes: [{ reason: 'ExitCode', message: String(outcome.exitCode) }] },
    };
  }
  if (version >= 4) return Buffer.from(JSON.stringify(status));
  return status.status === 'Success' ? Buffer.alloc(0) : Buffer.from(String(status.message));
}

/**
 * Turns the resize stream's bytes into sizes. Clients write JSON objects back to back
 * (`{"Width":80,"Height":24}`, Go's encoder adds a newline); one may arrive split across frames.
 * Malformed objects are skipped: a bad resize must not end the session.
 */
export class ResizeDecoder {
  private pending = '';

  push(chunk: Buffer | string): TerminalSize[] {
    this.pending += chunk.toString();
    const out: TerminalSize[] = [];
    let depth = 0;
    let inString = false;
    let escaped = false;
    let start = -1;
    let consumed = 0;
    for (let i = 0; i < this.pending.length; i++) {
      const c = this.pending[i];
      if (inString) {
        if (escaped) escaped = false;
        else if (c === '\\') escaped = true;
        else if (c === '"') inString = false;
        continue;
      }
      if (c === '"') inString = true;
      else if (c === '{') {
        if (depth === 0) start = i;
        depth++;
      } else if (c === '}' && depth > 0) {
        depth--;
        if (depth === 0) {
          const size = parseSize(this.pending.slice(start, i + 1));
          if (size) out.push(size);
          consumed = i + 1;
        }
      } else if (depth === 0) consumed = i + 1;
    }
    this.pending = this.pending.slice(consumed);
    if (this.pending.length > 4096) this.pending = '';
    return out;
  }
}

function parseSize(text: string): TerminalSize | undefined {
  try {
    const v = JSON.parse(text) as Record<string, unknown>;
    const width = v.Width ?? v.width;
    const height = v.Height ?? v.height;
    if (typeof width !== 'number' || typeof height !== 'number') return undefined;
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 0 || height < 0 || width > 0xffff || height > 0xffff) return undefined;
    return { width, height };
  } catch {
    return undefined;
  }
}

/** An async queue of resize events: the transport pushes, the backend iterates. */
export class ResizeQueue implements AsyncIterable<TerminalSize> {
  private items: TerminalSize[] = [];
  private waiter: ((r: IteratorResult<TerminalSize>) => void) | undefined;
  private ended = false;

  push(size: TerminalSize): void {
    if (this.ended) return;
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      w({ value: size, done: false });
    } else {
      // Only the latest size matters if the backend falls behind.
      this.items = [size];
    }
  }

  end(): void {
    this.ended = true;
    const w = this.waiter;
    this.waiter = undefined;
    w?.({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<TerminalSize> {
    return {
      next: () => {
        const item = this.items.shift();
        if (item) return Promise.resolve({ value: item, done: false });
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          this.waiter = resolve;
        });
      },
      return: () => {
        this.end();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
