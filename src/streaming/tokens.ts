// Single-use, expiring tokens: what an Exec/Attach/PortForward URL carries instead of the request.
// The CRI call stores the validated request here; the first HTTP request with the token takes it.
import { randomBytes } from 'node:crypto';
import { resourceExhausted } from '../util/errors.ts';

export type StreamRequest =
  | { kind: 'exec'; containerId: string; cmd: string[]; tty: boolean; stdin: boolean; stdout: boolean; stderr: boolean }
  | { kind: 'attach'; containerId: string; tty: boolean; stdin: boolean; stdout: boolean; stderr: boolean }
  | { kind: 'portforward'; podSandboxId: string; ports: number[] };

export class TokenCache {
  private readonly entries = new Map<string, { request: StreamRequest; expires: number }>();
  private readonly ttlMs: number;
  private readonly max: number;

  constructor(ttlMs: number, max = 1000) {
    this.ttlMs = ttlMs;
    this.max = max;
  }

  /** Stores a request and returns its token: 32 random bytes, URL-safe. */
  put(request: StreamRequest, now = Date.now()): string {
    this.prune(now);
    if (this.entries.size >= this.max) {
      throw resourceExhausted(`${this.max} streaming sessions are waiting for their clients; retry when some have connected or expired`);
    }
    const token = randomBytes(32).toString('base64url');
    this.entries.set(token, { request, expires: now + this.ttlMs });
    return token;
  }

  /** Takes the request for a token: a token works once, and not after it expired. */
  take(token: string, now = Date.now()): StreamRequest | undefined {
    const entry = this.entries.get(token);
    if (!entry) return undefined;
    this.entries.delete(token);
    return entry.expires > now ? entry.request : undefined;
  }

  private prune(now: number): void {
    for (const [token, e] of this.entries) if (e.expires <= now) this.entries.delete(token);
  }
}
