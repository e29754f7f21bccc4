// Waiting for a condition in tests: poll it with a deadline, never sleep a guessed time.
import { setTimeout as delay } from 'node:timers/promises';

/** Resolves once `check()` is truthy; throws naming `what` if it is not within `timeoutMs`. */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(10);
  }
}
