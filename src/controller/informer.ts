// A list-then-watch cache of one resource, replacing client-node's ListWatch (which stops for good
// on any non-410 error and asks for no bookmarks): lists in pages, watches with bookmarks and a
// random server timeout, relists (after a little jitter) on 410 Gone, and restarts after any other
// failure with capped exponential backoff and full jitter. A quiet stream with nothing, not even a
// bookmark, for longer than the idle timeout is treated as dead. While the API is unreachable the
// cache keeps its last contents; the relist on recovery replaces it whole, so deletions made
// meanwhile are seen.
import type { Logger } from 'pino';
import type { KubeObject } from './api.ts';
import { apiError, readAll, type Kube } from './kube.ts';
import type { Metrics } from './metrics.ts';
import { jittered, sleep, type BackoffPolicy } from './backoff.ts';

export interface WatchTiming {
  /** Server-side timeoutSeconds of each watch, drawn uniformly from [min, max]. */
  watchTimeoutSeconds: { min: number; max: number };
  /** A stream silent this long (ms) is dropped and restarted; keep it above the bookmark period. */
  idleTimeoutMs: number;
  /** Delay of the relist after 410 Gone: uniform in [0, this] ms. */
  relistJitterMs: number;
  backoff: BackoffPolicy;
  pageSize: number;
}

export const DEFAULT_TIMING: WatchTiming = {
  watchTimeoutSeconds: { min: 300, max: 600 },
  // The apiserver sends a bookmark about once a minute on a quiet watch.
  idleTimeoutMs: 150_000,
  relistJitterMs: 5_000,
  backoff: { initialMs: 1_000, maxMs: 60_000 },
  pageSize: 500,
};

export interface InformerOptions {
  /** Collection path, e.g. `/apis/berth.io/v1alpha1/imageprefetches`. */
  path: string;
  /** Extra query (fieldSelector, labelSelector), already encoded. */
  query?: string;
  /** Short name for logs and metrics: `nodes`, `imageprefetches`. */
  name: string;
  timing: WatchTiming;
  log: Logger;
  metrics: Metrics;
  onChange: () => void;
}

interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: KubeObject & { code?: number; message?: string };
}

class Gone extends Error {}

export function objectKey(o: KubeObject): string {
  return o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;
}

export class Informer<T extends KubeObject> {
  readonly store = new Map<string, T>();
  #synced = false;
  #resourceVersion = '';
  readonly #kube: Kube;
  readonly #o: InformerOptions;

  constructor(kube: Kube, options: InformerOptions) {
    this.#kube = kube;
    this.#o = options;
  }

  /** True once a first list has landed (the cache may be stale during an outage). */
  get synced(): boolean {
    return this.#synced;
  }

  /**
   * Takes the answer to our own write as the cached copy, but only while the cache still holds the
   * version the write was based on. Otherwise the watch got there first: the cache holds its copy,
   * as new or newer than the answer, or nothing because the object was deleted meanwhile, and a
   * late answer must neither roll it back nor bring a deleted object back for good.
   */
  accept(answer: T, basedOn: string | undefined): void {
    const key = objectKey(answer);
    if (this.store.get(key)?.metadata.resourceVersion === basedOn) this.store.set(key, answer);
  }

  /** Runs until `signal` fires. Never throws: every failure is retried. */
  async run(signal: AbortSignal): Promise<void> {
    const { timing, log, metrics, name } = this.#o;
    let attempt = 0;
    let needList = true;
    while (!signal.aborted) {
      try {
        if (needList) {
          await this.#list(signal);
          needList = false;
          attempt = 0;
        }
        const progressed = await this.#watch(signal);
        if (progressed) attempt = 0;
        metrics.inc('berth_controller_watch_restarts_total', { resource: name, why: 'timeout' });
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof Gone) {
          needList = true;
          metrics.inc('berth_controller_watch_restarts_total', { resource: name, why: 'gone' });
          log.info({ resource: name }, 'watch expired (410); relisting');
          await sleep(Math.random() * timing.relistJitterMs, signal);
          continue;
        }
        attempt++;
        const retryAfterMs = ((err as { retryAfter?: number }).retryAfter ?? 0) * 1000;
        const delay = Math.max(retryAfterMs, jittered(timing.backoff, attempt));
        metrics.inc('berth_controller_watch_restarts_total', { resource: name, why: 'error' });
        metrics.set('berth_controller_api_up', {}, 0);
        log.warn({ resource: name, err: (err as Error).message, attempt, delayMs: delay }, 'list/watch failed; retrying');
        await sleep(delay, signal);
        // After a failure the resourceVersion may be too old anyway; a relist also catches
        // deletions made while the API was unreachable.
        needList = needList || attempt >= 2;
      }
    }
  }

  async #list(signal: AbortSignal): Promise<void> {
    const { pageSize, name } = { ...this.#o.timing, name: this.#o.name };
    const fresh = new Map<string, T>();
    let cont = '';
    let rv = '';
    do {
      const q = [`limit=${pageSize}`, cont ? `continue=${encodeURIComponent(cont)}` : '', this.#o.query ?? ''].filter(Boolean).join('&');
      const res = await this.#kube.open('GET', `${this.#o.path}?${q}`, undefined, {}, signal);
      const text = await readAll(res, signal);
      // An expired continue token is 410 too: start the list over.
      if (res.statusCode === 410) throw new Gone();
      if (res.statusCode !== 200) throw apiError(res.statusCode ?? 0, text, res.headers['retry-after'], `list ${name}`);
      const page = JSON.parse(text) as { items?: T[]; metadata?: { continue?: string; resourceVersion?: string } };
      for (const item of page.items ?? []) fresh.set(objectKey(item), item);
      cont = page.metadata?.continue ?? '';
      rv = page.metadata?.resourceVersion ?? rv;
    } while (cont);
    this.store.clear();
    for (const [k, v] of fresh) this.store.set(k, v);
    this.#resourceVersion = rv;
    this.#synced = true;
    this.#o.metrics.inc('berth_controller_relists_total', { resource: name });
    this.#o.metrics.set('berth_controller_api_up', {}, 1);
    this.#o.onChange();
  }

  /** One watch stream; returns whether it delivered anything. Throws Gone on 410. */
  async #watch(signal: AbortSignal): Promise<boolean> {
    const { timing } = this.#o;
    const timeout = Math.round(timing.watchTimeoutSeconds.min + Math.random() * (timing.watchTimeoutSeconds.max - timing.watchTimeoutSeconds.min));
    const q = ['watch=1', 'allowWatchBookmarks=true', `resourceVersion=${encodeURIComponent(this.#resourceVersion)}`, `timeoutSeconds=${timeout}`, this.#o.query ?? '']
      .filter(Boolean)
      .join('&');
    const ac = new AbortController();
    const stop = (): void => ac.abort(signal.reason);
    signal.addEventListener('abort', stop, { once: true });
    let idle: NodeJS.Timeout | undefined;
    let idled = false;
    const arm = (): void => {
      clearTimeout(idle);
      idle = setTimeout(() => {
        idled = true;
        ac.abort(new Error(`no event or bookmark for ${timing.idleTimeoutMs} ms`));
      }, timing.idleTimeoutMs);
    };
    let progressed = false;
    try {
      arm();
      const res = await this.#kube.open('GET', `${this.#o.path}?${q}`, undefined, {}, ac.signal);
      if (res.statusCode === 410) {
        res.resume();
        throw new Gone();
      }
      if (res.statusCode !== 200) throw apiError(res.statusCode ?? 0, await readAll(res, ac.signal), res.headers['retry-after'], `watch ${this.#o.name}`);
      this.#o.metrics.set('berth_controller_api_up', {}, 1);
      let buf = '';
      for await (const chunk of res) {
        arm();
        buf += (chunk as Buffer).toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line) progressed = this.#apply(JSON.parse(line) as WatchEvent) || progressed;
        }
      }
      return progressed;
    } catch (err) {
      if (idled) throw new Error(`watch ${this.#o.name} went quiet: no event or bookmark for ${timing.idleTimeoutMs} ms`, { cause: err });
      throw err;
    } finally {
      clearTimeout(idle);
      signal.removeEventListener('abort', stop);
    }
  }

  /** Applies one event; returns true (progress) unless it is an error. */
  #apply(ev: WatchEvent): boolean {
    const rv = ev.object?.metadata?.resourceVersion;
    switch (ev.type) {
      case 'ADDED':
      case 'MODIFIED':
        this.store.set(objectKey(ev.object), ev.object as unknown as T);
        break;
      case 'DELETED':
        this.store.delete(objectKey(ev.object));
        break;
      case 'BOOKMARK':
        if (rv) this.#resourceVersion = rv;
        return true;
      case 'ERROR':
        if (ev.object.code === 410) throw new Gone();
        throw new Error(`watch ${this.#o.name} error: ${ev.object.code ?? ''} ${ev.object.message ?? ''}`);
      default:
        return false;
    }
    if (rv) this.#resourceVersion = rv;
    this.#o.onChange();
    return true;
  }
}
