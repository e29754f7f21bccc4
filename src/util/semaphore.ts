// Bounds how many async jobs run at once (layer downloads per daemon, mknod children per layer).
import { BerthError } from './errors.ts';

export class Semaphore {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  private readonly limit: number;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** Runs `job` once a slot is free; a caller whose `signal` fires while queued leaves the queue. */
  async run<T>(job: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    signal?.throwIfAborted();
    // A finishing job hands its slot straight to the next waiter, so the count never overshoots.
    if (this.active < this.limit) this.active++;
    else await this.queue(signal);
    try {
      return await job();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }

  private queue(signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const wake = (): void => {
        signal?.removeEventListener('abort', leave);
        resolve();
      };
      const leave = (): void => {
        const i = this.waiting.indexOf(wake);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal?.reason ?? new BerthError('cancelled', 'cancelled while waiting for a slot'));
      };
      this.waiting.push(wake);
      signal?.addEventListener('abort', leave, { once: true });
    });
  }
}
