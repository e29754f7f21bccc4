// The node agent's pulls for the ImagePrefetches that match its node: per image a small state
// machine (Pending → Pulling → Present, or Failed with a retry time), at most maxConcurrentPulls
// pulls per prefetch, retries with capped exponential backoff. An image already present is not
// pulled; a tag is checked again every refreshSeconds through PullImage, which fetches layers only
// when the tag's digest moved. Every state change calls onChange; the agent turns that into one
// coalesced status write.
import type { Logger } from 'pino';
import { status as GrpcStatus } from '@grpc/grpc-js';
import type { CriClient } from '../client/cri-client.ts';
import { parseReference, formatName, type ImageRef } from '../image/reference.ts';
import { PREFETCH_DEFAULTS, type ImagePrefetch, type ImageState, type NodeImageStatus, type NodePrefetchStatus, type Condition } from './api.ts';
import { backoffCeiling } from './backoff.ts';
import { PrefetchError, resolvePullAuth, type AuthConfig } from './pull-secrets.ts';
import type { Kube } from './kube.ts';
import type { Metrics } from './metrics.ts';

interface ImageJob {
  image: string;
  ref: ImageRef | undefined;
  state: ImageState;
  digest?: string;
  attempts: number;
  reason?: string;
  lastError?: string;
  /** ms epoch: next retry (Failed) or next tag check (Present). */
  dueAt: number;
  running: boolean;
}

interface Settings {
  pin: boolean;
  refreshMs: number;
  maxConcurrent: number;
  backoff: { initialMs: number; maxMs: number };
  timeoutMs: number;
}

interface PrefetchJob {
  namespace: string;
  name: string;
  uid: string;
  generation: number;
  pullSecrets: string[];
  settings: Settings;
  images: Map<string, ImageJob>;
  startAt: number;
  conditions: Condition[];
}

function settingsOf(p: ImagePrefetch): Settings {
  const s = p.spec;
  const d = PREFETCH_DEFAULTS;
  return {
    pin: s.pin ?? d.pin,
    refreshMs: (s.refreshSeconds ?? d.refreshSeconds) * 1000,
    maxConcurrent: s.maxConcurrentPulls ?? d.maxConcurrentPulls,
    backoff: { initialMs: (s.backoff?.initialSeconds ?? d.backoff.initialSeconds) * 1000, maxMs: (s.backoff?.maxSeconds ?? d.backoff.maxSeconds) * 1000 },
    timeoutMs: (s.timeoutSeconds ?? d.timeoutSeconds) * 1000,
  };
}

export interface PrefetcherOptions {
  cri: CriClient;
  kube: Kube;
  log: Logger;
  metrics: Metrics;
  onChange: () => void;
  /** Scales spec seconds (jitter, backoff, refresh) down in tests; 1 in production. */
  timeScale: number;
}

export class Prefetcher {
  readonly #jobs = new Map<string, PrefetchJob>();
  readonly #o: PrefetcherOptions;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  readonly #inflight = new Set<Promise<void>>();

  constructor(options: PrefetcherOptions) {
    this.#o = options;
  }

  /** Makes the set of prefetches this node works on exactly `matching` (by uid). */
  sync(matching: ImagePrefetch[]): void {
    const seen = new Set<string>();
    for (const p of matching) {
      const uid = p.metadata.uid ?? `${p.metadata.namespace}/${p.metadata.name}`;
      seen.add(uid);
      let job = this.#jobs.get(uid);
      const generation = p.metadata.generation ?? 0;
      if (!job) {
        const jitter = (p.spec.startJitterSeconds ?? PREFETCH_DEFAULTS.startJitterSeconds) * 1000 * this.#o.timeScale;
        job = {
          namespace: p.metadata.namespace ?? 'default',
          name: p.metadata.name,
          uid,
          generation: -1,
          pullSecrets: [],
          settings: settingsOf(p),
          images: new Map(),
          startAt: Date.now() + Math.random() * jitter,
          conditions: [],
        };
        this.#jobs.set(uid, job);
      }
      if (job.generation !== generation) {
        job.generation = generation;
        job.settings = settingsOf(p);
        job.pullSecrets = (p.spec.pullSecrets ?? []).map((s) => s.name);
        const wanted = new Set(p.spec.images);
        for (const image of job.images.keys()) if (!wanted.has(image)) job.images.delete(image);
        for (const image of p.spec.images) {
          if (job.images.has(image)) continue;
          let ref: ImageRef | undefined;
          try {
            ref = parseReference(image);
          } catch {
            ref = undefined;
          }
          job.images.set(image, { image, ref, state: 'Pending', attempts: 0, dueAt: 0, running: false });
        }
        this.#o.onChange();
      }
    }
    for (const uid of this.#jobs.keys()) {
      if (!seen.has(uid)) {
        this.#jobs.delete(uid);
        this.#o.onChange();
      }
    }
    this.#schedule(0);
  }

  /** Image references this node should keep pinned now. */
  pins(): string[] {
    const out = new Set<string>();
    for (const job of this.#jobs.values()) if (job.settings.pin) for (const img of job.images.values()) if (img.ref) out.add(img.image);
    return [...out].sort();
  }

  /** The `status.prefetches` entries of this node's BerthNode. */
  status(): NodePrefetchStatus[] {
    const out: NodePrefetchStatus[] = [];
    for (const job of [...this.#jobs.values()].sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`))) {
      const images: NodeImageStatus[] = [...job.images.values()].map((i) => ({
        image: i.image,
        ...(i.digest ? { digest: i.digest } : {}),
        state: i.state,
        attempts: i.attempts,
        ...(i.reason ? { reason: i.reason } : {}),
        ...(i.lastError ? { lastError: i.lastError.slice(0, 1000) } : {}),
        ...(i.state === 'Failed' ? { nextRetryAt: new Date(i.dueAt).toISOString().replace(/\.\d+Z$/, 'Z') } : {}),
      }));
      const present = images.filter((i) => i.state === 'Present').length;
      const failed = images.filter((i) => i.state === 'Failed').length;
      const ready = present === images.length;
      job.conditions = setCondition(job.conditions, {
        type: 'Ready',
        status: ready ? 'True' : 'False',
        reason: ready ? 'AllPresent' : failed > 0 ? 'PullFailed' : 'Pulling',
        message: `${present}/${images.length} images present${failed ? `, ${failed} failed` : ''}`,
        observedGeneration: job.generation,
      });
      out.push({ namespace: job.namespace, name: job.name, uid: job.uid, observedGeneration: job.generation, conditions: job.conditions, images });
    }
    return out;
  }

  /** Stops scheduling and waits for pulls in flight (they are short-lived CRI calls with deadlines). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await Promise.allSettled([...this.#inflight]);
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#tick(), Math.max(0, delayMs));
  }

  #tick(): void {
    const now = Date.now();
    let next = Infinity;
    for (const job of this.#jobs.values()) {
      if (job.startAt > now) {
        next = Math.min(next, job.startAt);
        continue;
      }
      let running = [...job.images.values()].filter((i) => i.running).length;
      for (const img of job.images.values()) {
        if (img.running) continue;
        const due = img.state === 'Pending' || ((img.state === 'Failed' || img.state === 'Present') && img.dueAt <= now);
        if (!due) {
          if (img.state !== 'Pulling') next = Math.min(next, img.dueAt);
          continue;
        }
        if (running >= job.settings.maxConcurrent) break;
        running++;
        this.#start(job, img);
      }
    }
    if (Number.isFinite(next)) this.#schedule(next - now);
  }

  #start(job: PrefetchJob, img: ImageJob): void {
    img.running = true;
    const p = this.#work(job, img).finally(() => {
      img.running = false;
      this.#inflight.delete(p);
      this.#schedule(0);
    });
    this.#inflight.add(p);
  }

  async #work(job: PrefetchJob, img: ImageJob): Promise<void> {
    const { cri, log, metrics } = this.#o;
    const refresh = img.state === 'Present';
    try {
      if (!img.ref) throw new PrefetchError('InvalidImage', `${img.image} is not a valid image reference`);
      if (!refresh) {
        // Present already (pulled by a kubelet, another prefetch, or before a restart): no pull.
        const digest = await this.#presentDigest(img.ref, img.image);
        if (digest !== undefined) {
          this.#set(job, img, { state: 'Present', digest: digest || undefined, reason: undefined, lastError: undefined });
          img.dueAt = this.#refreshAt(job, img);
          return;
        }
        img.attempts++;
        this.#set(job, img, { state: 'Pulling' });
      }
      const auth: AuthConfig | undefined = job.pullSecrets.length ? await resolvePullAuth(this.#o.kube, job.namespace, job.pullSecrets, img.ref) : undefined;
      const started = Date.now();
      await cri.call('image', 'PullImage', { image: { image: img.image }, ...(auth ? { auth } : {}) }, { timeoutMs: job.settings.timeoutMs });
      metrics.inc('berth_controller_pull_seconds_sum', {}, (Date.now() - started) / 1000);
      metrics.inc('berth_controller_pull_seconds_count');
      const digest = (await this.#presentDigest(img.ref, img.image)) || undefined;
      if (refresh && digest !== img.digest) log.info({ image: img.image, from: img.digest, to: digest }, 'tag moved; pulled the new image');
      this.#set(job, img, { state: 'Present', digest, reason: undefined, lastError: undefined });
      img.dueAt = this.#refreshAt(job, img);
    } catch (err) {
      const { reason, message } = explain(err);
      if (refresh) {
        // A failed tag check leaves the image present; try again at the next refresh.
        log.warn({ image: img.image, reason, err: message }, 'tag refresh failed');
        img.dueAt = this.#refreshAt(job, img);
        return;
      }
      const delay = backoffCeiling(job.settings.backoff, img.attempts) * this.#o.timeScale;
      img.dueAt = Date.now() + delay;
      log.warn({ image: img.image, prefetch: `${job.namespace}/${job.name}`, reason, err: message, attempt: img.attempts, retryInMs: delay }, 'prefetch pull failed');
      this.#set(job, img, { state: 'Failed', reason, lastError: message });
    }
  }

  /** The repo digest of the image under this name if present ('' if it has none), else undefined. */
  async #presentDigest(ref: ImageRef, image: string): Promise<string | undefined> {
    const res = await this.#o.cri.call<{ image: { repo_digests?: string[] } | null }>('image', 'ImageStatus', { image: { image } }, { timeoutMs: 30_000 });
    if (!res.image) return undefined;
    const repo = formatName(ref);
    const named = (res.image.repo_digests ?? []).find((d) => d.startsWith(`${repo}@`));
    return named ? named.slice(repo.length + 1) : '';
  }

  #refreshAt(job: PrefetchJob, img: ImageJob): number {
    // Digest references never move: no refresh.
    return img.ref?.digest ? Infinity : Date.now() + job.settings.refreshMs * this.#o.timeScale;
  }

  #set(job: PrefetchJob, img: ImageJob, change: Partial<Pick<ImageJob, 'state' | 'digest' | 'reason' | 'lastError'>>): void {
    const before = JSON.stringify([img.state, img.digest, img.reason, img.lastError, img.attempts]);
    Object.assign(img, change);
    if (JSON.stringify([img.state, img.digest, img.reason, img.lastError, img.attempts]) !== before && this.#jobs.get(job.uid) === job) this.#o.onChange();
    this.#gauge();
  }

  #gauge(): void {
    const counts: Record<ImageState, number> = { Pending: 0, Pulling: 0, Present: 0, Failed: 0 };
    for (const job of this.#jobs.values()) for (const img of job.images.values()) counts[img.state]++;
    for (const [state, n] of Object.entries(counts)) this.#o.metrics.set('berth_controller_images', { state }, n);
  }
}

/** A status reason and message for a failed pull. */
function explain(err: unknown): { reason: string; message: string } {
  if (err instanceof PrefetchError) return { reason: err.reason, message: err.message };
  const e = err as { code?: number; details?: string; message?: string };
  const message = e.details || e.message || String(err);
  switch (e.code) {
    case GrpcStatus.UNAUTHENTICATED:
    case GrpcStatus.PERMISSION_DENIED:
      return { reason: 'Unauthorized', message };
    case GrpcStatus.NOT_FOUND:
      return { reason: 'ImageNotFound', message };
    case GrpcStatus.INVALID_ARGUMENT:
      return { reason: 'InvalidImage', message };
    case GrpcStatus.DEADLINE_EXCEEDED:
      return { reason: 'Timeout', message };
    default:
      return { reason: 'PullFailed', message };
  }
}

/** Replaces the condition of `c.type`, keeping its transition time when the status did not change. */
export function setCondition(list: Condition[], c: Omit<Condition, 'lastTransitionTime'>): Condition[] {
  const old = list.find((x) => x.type === c.type);
  const lastTransitionTime = old && old.status === c.status ? old.lastTransitionTime : new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  return [...list.filter((x) => x.type !== c.type), { ...c, lastTransitionTime }].sort((a, b) => a.type.localeCompare(b.type));
}
