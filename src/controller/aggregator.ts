// The aggregator: recomputes every ImagePrefetch's status from the BerthNodes' per-node entries
// (matched/ready/failed counts, Ready/Progressing/Degraded, at most 10 failures listed). Each
// summary is a pure function of what it reads, so a restart or a second run writes the same thing;
// it writes only when the summary changed, and at most once per second per prefetch.
import type { Logger } from 'pino';
import { GROUP, PREFETCH_BOUNDS, VERSION, type BerthNode, type Condition, type ImagePrefetch, type ImagePrefetchStatus, type PrefetchFailure } from './api.ts';
import { resourcePath, type Kube } from './kube.ts';
import { Informer, objectKey, type WatchTiming } from './informer.ts';
import type { Metrics } from './metrics.ts';
import { sleep } from './backoff.ts';
import { setCondition } from './prefetcher.ts';
import { ChangeFlag } from './change-flag.ts';

export interface AggregatorOptions {
  kube: Kube;
  log: Logger;
  metrics: Metrics;
  timing: WatchTiming;
  /** Shortest gap between two status writes of one prefetch (ms). */
  writeIntervalMs: number;
}

/** The summary of one prefetch from the BerthNodes' entries; conditions keep `previous` times. */
export function summarize(p: ImagePrefetch, nodes: Iterable<BerthNode>, previous: Condition[] = []): ImagePrefetchStatus {
  const generation = p.metadata.generation ?? 0;
  let matched = 0;
  let ready = 0;
  let failed = 0;
  let pending = 0;
  const failures: PrefetchFailure[] = [];
  for (const bn of nodes) {
    const entry = bn.status?.prefetches?.find((e) => e.uid === p.metadata.uid);
    if (!entry) continue;
    matched++;
    const current = entry.observedGeneration === generation;
    const bad = entry.images.filter((i) => i.state === 'Failed');
    if (!current) pending++;
    else if (bad.length > 0) failed++;
    else if (entry.images.length === p.spec.images.length && entry.images.every((i) => i.state === 'Present')) ready++;
    else pending++;
    for (const i of current ? bad : []) failures.push({ node: bn.metadata.name, image: i.image, reason: i.reason ?? 'PullFailed', message: (i.lastError ?? '').slice(0, 1000) });
  }
  failures.sort((a, b) => a.node.localeCompare(b.node) || a.image.localeCompare(b.image));
  let conditions = previous;
  const none = matched === 0;
  conditions = setCondition(conditions, {
    type: 'Ready',
    status: !none && ready === matched ? 'True' : 'False',
    reason: none ? 'NoMatchingNodes' : ready === matched ? 'AllPresent' : failed > 0 ? 'PullFailed' : 'Pulling',
    message: none ? 'no berth node matches the nodeSelector (yet)' : `${ready}/${matched} nodes have every image`,
    observedGeneration: generation,
  });
  conditions = setCondition(conditions, {
    type: 'Progressing',
    status: pending > 0 ? 'True' : 'False',
    reason: pending > 0 ? 'Pulling' : 'Settled',
    message: pending > 0 ? `${pending} nodes still pulling` : 'no node is pulling',
    observedGeneration: generation,
  });
  conditions = setCondition(conditions, {
    type: 'Degraded',
    status: failed > 0 ? 'True' : 'False',
    reason: failed > 0 ? 'PullFailed' : 'NoFailures',
    message: failed > 0 ? `${failed} nodes failed to pull some image` : 'no failures',
    observedGeneration: generation,
  });
  return { observedGeneration: generation, matched, ready, failed, conditions, failures: failures.slice(0, PREFETCH_BOUNDS.failuresListed) };
}

/** The status minus transition times, to tell a real change from a recomputation. */
function comparable(s: ImagePrefetchStatus | undefined): string {
  return JSON.stringify({ ...s, conditions: (s?.conditions ?? []).map(({ lastTransitionTime: _t, ...c }) => c) });
}

export class Aggregator {
  readonly #o: AggregatorOptions;
  readonly #prefetches: Informer<ImagePrefetch>;
  readonly #nodes: Informer<BerthNode>;
  readonly #lastWrite = new Map<string, number>();
  readonly #changes = new ChangeFlag(true);

  constructor(options: AggregatorOptions) {
    this.#o = options;
    const common = { timing: options.timing, log: options.log, metrics: options.metrics, onChange: () => this.#kick() };
    this.#prefetches = new Informer<ImagePrefetch>(options.kube, { ...common, name: 'imageprefetches', path: resourcePath(GROUP, VERSION, 'imageprefetches') });
    this.#nodes = new Informer<BerthNode>(options.kube, { ...common, name: 'berthnodes', path: resourcePath(GROUP, VERSION, 'berthnodes') });
  }

  #kick(): void {
    this.#changes.raise();
  }

  async run(signal: AbortSignal): Promise<void> {
    await Promise.all([this.#prefetches.run(signal), this.#nodes.run(signal), this.#loop(signal)]);
  }

  async #loop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (!this.#changes.raised || !this.#prefetches.synced || !this.#nodes.synced) {
        await this.#changes.wait(signal);
        continue;
      }
      this.#changes.lower();
      const waitMs = await this.#recompute();
      if (waitMs > 0) {
        this.#changes.raise();
        await sleep(waitMs, signal);
      }
    }
  }

  /** Writes every changed summary allowed now; returns ms until a held-back one may be written. */
  async #recompute(): Promise<number> {
    const { kube, log, metrics, writeIntervalMs } = this.#o;
    let wait = 0;
    const nodes = [...this.#nodes.store.values()];
    for (const p of this.#prefetches.store.values()) {
      const next = summarize(p, nodes, p.status?.conditions ?? []);
      if (comparable(next) === comparable(p.status)) continue;
      const uid = p.metadata.uid ?? objectKey(p);
      const since = Date.now() - (this.#lastWrite.get(uid) ?? 0);
      if (since < writeIntervalMs) {
        wait = wait === 0 ? writeIntervalMs - since : Math.min(wait, writeIntervalMs - since);
        continue;
      }
      const path = `${resourcePath(GROUP, VERSION, 'imageprefetches', p.metadata.namespace)}/${encodeURIComponent(p.metadata.name)}/status`;
      try {
        const updated = await kube.patch<ImagePrefetch>(path, { status: next });
        this.#prefetches.accept(updated, p.metadata.resourceVersion);
        metrics.inc('berth_controller_status_writes_total', { kind: 'ImagePrefetch' });
      } catch (err) {
        log.warn({ prefetch: objectKey(p), err: (err as Error).message }, 'writing ImagePrefetch status failed; will retry');
        wait = wait === 0 ? writeIntervalMs : Math.min(wait, writeIntervalMs);
      } finally {
        // Counted from the answer: the server sees two writes at least the interval apart, however
        // long the first one took to reach it.
        this.#lastWrite.set(uid, Date.now());
      }
    }
    // Forget write times of prefetches that are gone.
    const live = new Set([...this.#prefetches.store.values()].map((p) => p.metadata.uid ?? objectKey(p)));
    for (const uid of this.#lastWrite.keys()) if (!live.has(uid)) this.#lastWrite.delete(uid);
    return wait;
  }
}
