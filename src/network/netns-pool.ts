// A few network namespaces made ahead of time, so RunPodSandbox does not wait for `unshare … ip link
// set lo up` (6 ms alone, 10-20 ms beside a pod start on the 2-core VM) before its CNI ADD can run.
//
// Each is pinned exactly where a pod's own would be, `<dir>/<id>`, under a sandbox ID chosen now:
// the pod that takes it gets that ID, so its pin needs no move (moving a pin is a mount call, a
// process on the hot path again) and it is indistinguishable from a pod's fresh one (loopback up,
// same path, removed by the pod's teardown). A pooled ID has no sandbox record, so what a killed
// daemon left in the pool is what the start-up sweep removes as orphan pins; close() removes the rest.
//
// Refilling runs one namespace at a time and only while no pod start is in flight (see `starting`):
// the processes it spawns would otherwise compete with the RPCs the pool is there to speed up.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { errorMessage } from '../util/errors.ts';
import { createNetns, removeNetns } from './netns.ts';

export interface PooledNetns {
  /** The sandbox ID the namespace was made for: the taker must use it. */
  id: string;
  path: string;
}

export class NetnsPool {
  readonly #dir: string;
  readonly #size: number;
  readonly #log: Logger;
  readonly #ready: string[] = [];
  /** The refill loop while it runs: one namespace at a time. */
  #filling: Promise<void> | undefined;
  /** Pod starts in flight; the pool refills only when there are none. */
  #starting = 0;
  #closed = false;
  readonly #stop = new AbortController();

  /** `dir` is where pods' netns pins live; `size` 0 makes a pool that never holds anything. */
  constructor(opts: { dir: string; size: number; log: Logger }) {
    this.#dir = opts.dir;
    this.#size = opts.size;
    this.#log = opts.log;
  }

  /** Begins filling in the background; call after the start-up sweep, which would remove the pins. */
  start(): void {
    this.#refill();
  }

  /** How many namespaces are ready to be taken. */
  get ready(): number {
    return this.#ready.length;
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

  /** A ready namespace, now the caller's (to use or remove), or undefined when the pool is empty. */
  take(): PooledNetns | undefined {
    const id = this.#ready.shift();
    return id === undefined ? undefined : { id, path: join(this.#dir, id) };
  }

  #refill(): void {
    if (this.#filling || this.#closed || this.#starting > 0 || this.#ready.length >= this.#size) return;
    this.#filling = this.#fill().finally(() => {
      this.#filling = undefined;
    });
  }

  async #fill(): Promise<void> {
    while (!this.#closed && this.#starting === 0 && this.#ready.length < this.#size) {
      const id = randomBytes(32).toString('hex');
      const path = join(this.#dir, id);
      try {
        await createNetns(path, this.#stop.signal);
      } catch (err) {
        // Tried again after the next pod start; meanwhile pods make their own (and fail with the reason).
        if (!this.#closed) this.#log.warn({ err: errorMessage(err) }, 'could not make a network namespace for the pool; pods make their own meanwhile');
        return;
      }
      if (this.#closed) {
        await removeNetns(path).catch((err: unknown) => this.#log.warn({ err: errorMessage(err), path }, 'could not remove a pooled network namespace at close'));
        return;
      }
      this.#ready.push(id);
    }
  }

  /** Stops refilling and removes every namespace not taken. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stop.abort();
    await this.#filling;
    const left = this.#ready.splice(0);
    const failures: unknown[] = [];
    for (const id of left) await removeNetns(join(this.#dir, id)).catch((err: unknown) => failures.push(err));
    if (failures.length > 0) throw failures[0];
  }
}
