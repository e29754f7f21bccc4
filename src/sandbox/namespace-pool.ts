// A few pods' namespaces made ahead of time, so RunPodSandbox does not wait for the processes that
// make them: a network namespace (`unshare … ip link set lo up`: 6 ms alone, 10-20 ms beside a pod
// start on the 2-core VM) that its CNI ADD needs first, and the IPC and UTS pins with /dev/shm
// (`unshare … mount`: 6-25 ms of process chain competing with the pod's CNI plugins for the CPU).
//
// Each set is made under a sandbox ID chosen now, exactly where a pod's own would be (the maker
// decides where; see SandboxService): the pod that takes it gets that ID, so nothing needs a move
// (moving a pin is a mount call, a process on the hot path again) and it is indistinguishable from
// a pod's fresh set. A pooled ID has no sandbox record, so what a killed daemon left in the pool is
// what the start-up sweep removes as orphans; close() removes the rest.
//
// Refilling runs one set at a time and only while no pod start is in flight (see `starting`): the
// processes it spawns would otherwise compete with the RPCs the pool is there to speed up.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { errorMessage } from '../util/errors.ts';

export interface NamespacePoolOptions {
  /** How many sets to keep ready; 0 makes a pool that never holds anything. */
  size: number;
  log: Logger;
  /** Makes the set for sandbox `id`; on failure it leaves nothing behind. */
  make(id: string, signal: AbortSignal): Promise<void>;
  /** Removes the set of sandbox `id` (at close, for the sets nobody took). */
  remove(id: string): Promise<void>;
}

export class NamespacePool {
  readonly #opts: NamespacePoolOptions;
  readonly #ready: string[] = [];
  /** The refill loop while it runs: one set at a time. */
  #filling: Promise<void> | undefined;
  /** Pod starts in flight; the pool refills only when there are none. */
  #starting = 0;
  #closed = false;
  readonly #stop = new AbortController();

  constructor(opts: NamespacePoolOptions) {
    this.#opts = opts;
  }

  /** Begins filling in the background; call after the start-up sweep, which would remove the sets. */
  start(): void {
    this.#refill();
  }

  /**
   * Marks a pod start in flight until the returned function is called; the pool refills once no
   * start is in flight (on the next turn of the event loop, so the finished start answers first).
   */
  starting(): () => void {
    this.#starting++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#starting--;
      setImmediate(() => this.#refill());
    };
  }

  /** The sandbox ID of a ready set, now the caller's (to use or remove), or undefined when the pool is empty. */
  take(): string | undefined {
    return this.#ready.shift();
  }

  #refill(): void {
    if (this.#filling || this.#closed || this.#starting > 0 || this.#ready.length >= this.#opts.size) return;
    this.#filling = this.#fill().finally(() => {
      this.#filling = undefined;
    });
  }

  async #fill(): Promise<void> {
    while (!this.#closed && this.#starting === 0 && this.#ready.length < this.#opts.size) {
      const id = randomBytes(32).toString('hex');
      try {
        await this.#opts.make(id, this.#stop.signal);
      } catch (err) {
        // Tried again after the next pod start; meanwhile pods make their own (and fail with the reason).
        if (!this.#closed) this.#opts.log.warn({ err: errorMessage(err) }, 'could not make namespaces for the pool; pods make their own meanwhile');
        return;
      }
      if (this.#closed) {
        await this.#opts.remove(id).catch((err: unknown) => this.#opts.log.warn({ err: errorMessage(err), sandbox: id }, 'could not remove pooled namespaces at close'));
        return;
      }
      this.#ready.push(id);
    }
  }

  /** Stops refilling and removes every set not taken. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stop.abort();
    await this.#filling;
    const failures: unknown[] = [];
    for (const id of this.#ready.splice(0)) await this.#opts.remove(id).catch((err: unknown) => failures.push(err));
    if (failures.length > 0) throw failures[0];
  }
}
