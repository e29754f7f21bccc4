// Container lifecycle events (created, started, stopped, deleted) for GetContainerEvents: a fan-out
// to every open stream, each with its own bounded queue so one slow client never holds up another.
export type ContainerEventKind = 'CONTAINER_CREATED_EVENT' | 'CONTAINER_STARTED_EVENT' | 'CONTAINER_STOPPED_EVENT' | 'CONTAINER_DELETED_EVENT';

export interface ContainerEvent {
  containerId: string;
  sandboxId: string;
  kind: ContainerEventKind;
  /** Nanoseconds since the epoch. */
  at: number;
}

/** Events a stream may fall behind by before it is cut off (the kubelet then relists). */
const MAX_BACKLOG = 10_000;

export class ContainerEvents {
  readonly #subscribers = new Set<{ queue: ContainerEvent[]; wake: () => void; overflow: boolean }>();

  emit(ev: ContainerEvent): void {
    for (const sub of this.#subscribers) {
      if (sub.queue.length >= MAX_BACKLOG) sub.overflow = true;
      else sub.queue.push(ev);
      sub.wake();
    }
  }

  /** Events from now on, until `signal` fires (the client left) or the stream falls too far behind. */
  async *subscribe(signal: AbortSignal): AsyncGenerator<ContainerEvent> {
    const sub = { queue: [] as ContainerEvent[], wake: (): void => undefined, overflow: false };
    this.#subscribers.add(sub);
    try {
      while (!signal.aborted && !sub.overflow) {
        const ev = sub.queue.shift();
        if (ev) {
          yield ev;
          continue;
        }
        await new Promise<void>((resolve) => {
          const done = (): void => {
            signal.removeEventListener('abort', done);
            resolve();
          };
          sub.wake = done;
          signal.addEventListener('abort', done, { once: true });
        });
      }
    } finally {
      this.#subscribers.delete(sub);
    }
  }
}
