// Work that concurrent callers share by key (one pull per image name, one download per blob, one
// unpack per chain ID), with cancellation that respects the sharing: a caller who gives up stops
// waiting at once, and the work itself is aborted only when no caller is left.
import { BerthError } from './errors.ts';

interface Entry<T> {
  promise: Promise<T>;
  controller: AbortController;
  waiters: number;
}

export class SharedWork<T> {
  readonly #running = new Map<string, Entry<T>>();

  /** True while work for `key` runs. */
  has(key: string): boolean {
    return this.#running.has(key);
  }

  /**
   * Joins the work running under `key`, or starts `work` for it. `work` gets a signal that fires
   * only when every caller's signal has fired. The last caller to leave waits for the aborted
   * work to settle (so its temp files are gone when it returns); the others leave at once.
   */
  run(key: string, signal: AbortSignal | undefined, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    let entry = this.#running.get(key);
    if (!entry) {
      const controller = new AbortController();
      const promise = Promise.resolve()
        .then(() => work(controller.signal))
        .finally(() => {
          if (this.#running.get(key) === fresh) this.#running.delete(key);
        });
      promise.catch(() => {}); // every caller sees the failure through its own promise
      const fresh: Entry<T> = { promise, controller, waiters: 0 };
      this.#running.set(key, fresh);
      entry = fresh;
    }
    return this.#wait(key, entry, signal);
  }

  #wait(key: string, entry: Entry<T>, signal: AbortSignal | undefined): Promise<T> {
    entry.waiters++;
    if (!signal) return entry.promise.finally(() => entry.waiters--);
    return new Promise<T>((resolve, reject) => {
      let gone = false;
      const leave = (): void => {
        gone = true;
        entry.waiters--;
        const reason: unknown = signal.reason ?? new BerthError('cancelled', 'the caller cancelled');
        if (entry.waiters > 0) {
          reject(reason);
          return;
        }
        // Nobody wants it any more: a caller arriving from now on starts afresh.
        if (this.#running.get(key) === entry) this.#running.delete(key);
        entry.controller.abort(reason);
        entry.promise.then(
          () => reject(reason),
          () => reject(reason),
        );
      };
      if (signal.aborted) {
        leave();
        return;
      }
      signal.addEventListener('abort', leave, { once: true });
      entry.promise.then(
        (value) => {
          if (gone) return;
          signal.removeEventListener('abort', leave);
          entry.waiters--;
          resolve(value);
        },
        (err: unknown) => {
          if (gone) return;
          signal.removeEventListener('abort', leave);
          entry.waiters--;
          reject(err);
        },
      );
    });
  }
}
