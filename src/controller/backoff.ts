// Retry delays: capped exponential backoff with full jitter (a random delay between 0 and the cap
// of the attempt), so many agents that lost the API server together do not return together.

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
}

/** The ceiling for attempt `n` (1-based): initial · 2^(n-1), at most max. */
export function backoffCeiling(policy: BackoffPolicy, attempt: number): number {
  return Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(30, Math.max(0, attempt - 1)));
}

/** Full jitter: uniform in [0, ceiling]. */
export function jittered(policy: BackoffPolicy, attempt: number, random: () => number = Math.random): number {
  return Math.round(random() * backoffCeiling(policy, attempt));
}

/** Resolves after `ms`, or at once when `signal` fires (never rejects). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
