// The one semaphore (src/util/semaphore.ts): never more jobs at once than its limit, even when a
// newcomer arrives between a finishing job and the waiter it wakes; a queued caller can leave.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Semaphore } from '../../src/util/semaphore.ts';

/** Resolves after `n` microtask turns. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await Promise.resolve();
}

test('a newcomer arriving while a slot is handed over does not push past the limit', async () => {
  // Every delay from 0 to 8 microtask turns, so the newcomer lands at each point of the hand-over.
  for (let delay = 0; delay <= 8; delay++) {
    const sem = new Semaphore(1);
    let active = 0;
    let peak = 0;
    const job = (gate: Promise<void>) => (): Promise<void> => {
      active++;
      peak = Math.max(peak, active);
      return gate.then(() => {
        active--;
      });
    };
    let openA: () => void = () => undefined;
    const a = sem.run(job(new Promise<void>((r) => (openA = r))));
    const b = sem.run(job(Promise.resolve()));
    openA();
    const c = turns(delay).then(() => sem.run(job(Promise.resolve())));
    await Promise.all([a, b, c]);
    assert.equal(peak, 1, `newcomer after ${delay} turns ran beside another job`);
  }
});

test('a queued caller whose signal fires leaves the queue; the others still run', async () => {
  const sem = new Semaphore(1);
  let open: () => void = () => undefined;
  const first = sem.run(() => new Promise<void>((r) => (open = r)));
  const ac = new AbortController();
  const ran: string[] = [];
  const leaving = sem.run(async () => {
    ran.push('leaving');
  }, ac.signal);
  const staying = sem.run(async () => {
    ran.push('staying');
  });
  ac.abort(new Error('gone'));
  await assert.rejects(leaving, /gone/);
  open();
  await Promise.all([first, staying]);
  assert.deepEqual(ran, ['staying']);
  await sem.run(async () => undefined); // the slot came back
});
