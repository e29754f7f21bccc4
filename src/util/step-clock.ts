// Per-step timings of one operation for debug logs: each mark is the milliseconds from the start
// of the operation to the end of a step, so steps that run side by side show where they overlap.
export class StepClock {
  readonly #t0 = performance.now();
  readonly marks: Record<string, number> = {};

  /** Records that `step` finished now. */
  mark(step: string): void {
    this.marks[step] = Math.round((performance.now() - this.#t0) * 10) / 10;
  }

  /** Awaits `work` and marks `step` when it settles (also when it fails). */
  async time<T>(step: string, work: Promise<T>): Promise<T> {
    try {
      return await work;
    } finally {
      this.mark(step);
    }
  }
}
