// Waiting for a condition in tests: poll it with a deadline, never sleep a guessed time.
import { setTimeout as delay } from 'node:timers/promises';

export interface PollOptions<T> {
  timeoutMs?: number;
  intervalMs?: number;
  /** Which results end the wait; anything else means "not yet". */
  accept: (v: T) => boolean;
  /** Treat a throw from `check` as "not yet" (and name the last one on timeout) instead of failing at once. */
  retryErrors?: boolean;
  /** More to say on timeout, e.g. the daemon's log. */
  explain?: () => string;
}

/** Polls `check` until `accept` takes its result, which it returns; throws naming `what` at the deadline. */
export async function poll<T>(what: string, check: () => T | Promise<T>, opts: PollOptions<T>): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (opts.accept(v)) return v;
    } catch (err) {
      if (!opts.retryErrors) throw err;
      last = err;
    }
    if (Date.now() > deadline) {
      const cause = last === undefined ? '' : ` (last error: ${last instanceof Error ? last.message : String(last)})`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${cause}${opts.explain ? `\n${opts.explain()}` : ''}`);
    }
    await delay(opts.intervalMs ?? 10);
  }
}

/** Resolves once `check()` is truthy; throws naming `what` if it is not within `timeoutMs`. */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  await poll(what, check, { timeoutMs, accept: Boolean });
}
