// The "something changed" flag a reconcile loop sleeps on between passes: informers and pollers
// raise it, the loop lowers it when it starts a pass, so changes during a pass cause one more pass.

export class ChangeFlag {
  #raised: boolean;
  #wake: (() => void) | undefined;

  constructor(raised: boolean) {
    this.#raised = raised;
  }

  get raised(): boolean {
    return this.#raised;
  }

  /** Marks a change and wakes a loop waiting in wait(). */
  raise(): void {
    this.#raised = true;
    this.#wake?.();
  }

  /** The loop is about to act on what changed so far. */
  lower(): void {
    this.#raised = false;
  }

  /** Resolves at the next raise() or when `signal` fires. */
  async wait(signal: AbortSignal): Promise<void> {
    await new Promise<void>((resolve) => {
      // The listener goes with the wait: the signal lives as long as the process.
      const done = (): void => {
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.#wake = done;
      signal.addEventListener('abort', done, { once: true });
    });
    this.#wake = undefined;
  }
}
