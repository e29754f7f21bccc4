// The node agent: acts for its own node only, through the local berthd's socket. It labels the
// Node (berth.io/ keys only, merge-patch), drives the kubelet switch (kubelet-switch.ts), checks
// that berth's RuntimeClasses name handlers this node has, runs the ImagePrefetches that match the
// node, keeps their images pinned in berthd, and reports all of it in the node's own BerthNode
// (status written on change, coalesced). While the API server is unreachable it keeps pulling from
// its cached view and writes nothing but the latest status once the server is back.
import type { Logger } from 'pino';
import type { CriClient } from '../client/cri-client.ts';
import {
  API_VERSION,
  GROUP,
  LABEL_HANDLER_PREFIX,
  LABEL_PREFIX,
  LABEL_RUNTIME,
  LABEL_VERSION,
  VERSION,
  type BerthNode,
  type BerthNodeStatus,
  type Condition,
  type ImagePrefetch,
  type KubeObject,
} from './api.ts';
import { ApiError, resourcePath, type Kube } from './kube.ts';
import { Informer, type WatchTiming } from './informer.ts';
import type { Metrics } from './metrics.ts';
import { Prefetcher, setCondition } from './prefetcher.ts';
import { jittered, sleep } from './backoff.ts';
import { KubeletSwitch, type SwitchNode } from './kubelet-switch.ts';
import { ChangeFlag } from './change-flag.ts';
import { PeerPusher, type PeerPushOptions } from './peers.ts';

interface Node extends SwitchNode {
  status?: SwitchNode['status'] & { runtimeHandlers?: { name: string }[] };
}

interface RuntimeClass extends KubeObject {
  handler: string;
  scheduling?: { nodeSelector?: Record<string, string> };
}

/** What berthd said last: reachable at all, ready, its version and handlers. */
interface RuntimeView {
  reachable: boolean;
  ready: boolean;
  version: string;
  handlers: string[];
  message: string;
}

export interface AgentOptions {
  nodeName: string;
  kube: Kube;
  cri: CriClient;
  log: Logger;
  metrics: Metrics;
  timing: WatchTiming;
  /** How often berthd's CRI Status is asked (ms). */
  runtimePollMs: number;
  /** Shortest gap between two BerthNode status writes (ms): changes in between are coalesced. */
  statusIntervalMs: number;
  /** Pin owner name in berthd. */
  pinOwner: string;
  timeScale: number;
  /** How long the Node has, after the host's switch unit succeeded, to be Ready on berth (ms). */
  switchTimeoutMs: number;
  /** p2p: keep berthd's peer list to the nodes these names resolve to; absent = p2p off. */
  peers?: Omit<PeerPushOptions, 'cri' | 'log'>;
}

const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

export class NodeAgent {
  readonly #o: AgentOptions;
  readonly #nodes: Informer<Node>;
  readonly #prefetches: Informer<ImagePrefetch>;
  readonly #classes: Informer<RuntimeClass>;
  readonly #prefetcher: Prefetcher;
  readonly #switch: KubeletSwitch;
  readonly #peers: PeerPusher | undefined;
  #runtime: RuntimeView = { reachable: false, ready: false, version: '', handlers: [], message: 'not asked yet' };
  #conditions: Condition[] = [];
  #berthNodeExists = false;
  #lastStatus = '';
  #lastPins: string | undefined;
  readonly #changes = new ChangeFlag(false);
  #writeFailures = 0;

  constructor(options: AgentOptions) {
    this.#o = options;
    const common = { timing: options.timing, log: options.log, metrics: options.metrics, onChange: () => this.#kick() };
    this.#nodes = new Informer<Node>(options.kube, {
      ...common,
      name: 'nodes',
      path: resourcePath('', 'v1', 'nodes'),
      query: `fieldSelector=${encodeURIComponent(`metadata.name=${options.nodeName}`)}`,
    });
    this.#prefetches = new Informer<ImagePrefetch>(options.kube, { ...common, name: 'imageprefetches', path: resourcePath(GROUP, VERSION, 'imageprefetches') });
    this.#classes = new Informer<RuntimeClass>(options.kube, { ...common, name: 'runtimeclasses', path: resourcePath('node.k8s.io', 'v1', 'runtimeclasses') });
    this.#switch = new KubeletSwitch({
      nodeName: options.nodeName,
      kube: options.kube,
      cri: options.cri,
      log: options.log,
      readyTimeoutMs: options.switchTimeoutMs,
      condition: () => this.#conditions.find((c) => c.type === 'KubeletSwitch'),
      onCondition: (c) => {
        this.#conditions = setCondition(this.#conditions, c);
      },
      onNode: (n, basedOn) => this.#nodes.accept(n, basedOn),
    });
    this.#peers = options.peers ? new PeerPusher({ ...options.peers, cri: options.cri, log: options.log }) : undefined;
    this.#prefetcher = new Prefetcher({ cri: options.cri, kube: options.kube, log: options.log, metrics: options.metrics, onChange: () => this.#kick(), timeScale: options.timeScale });
  }

  /** berthd's readiness as the DaemonSet's readiness probe sees it: a live CRI Status. */
  async runtimeReady(): Promise<boolean> {
    return (await this.#probeRuntime()).ready;
  }

  async run(signal: AbortSignal): Promise<void> {
    const tasks = [this.#nodes.run(signal), this.#prefetches.run(signal), this.#classes.run(signal), this.#pollRuntime(signal), this.#loop(signal)];
    // Needs only DNS and berthd, never the API server: peers stay current through an API outage.
    if (this.#peers) tasks.push(this.#peers.run(signal));
    await Promise.all(tasks);
    await this.#prefetcher.stop();
  }

  #kick(): void {
    this.#changes.raise();
  }

  async #pollRuntime(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const before = JSON.stringify(this.#runtime);
      this.#runtime = await this.#probeRuntime();
      // A berthd that went away may come back with another root: state the pins again then.
      if (!this.#runtime.reachable) this.#lastPins = undefined;
      // A switch in progress is followed by polling berthd's SwitchStatus and the Node.
      if (JSON.stringify(this.#runtime) !== before || this.#switch.active(this.#nodes.store.get(this.#o.nodeName))) this.#kick();
      await sleep(this.#o.runtimePollMs, signal);
    }
  }

  async #probeRuntime(): Promise<RuntimeView> {
    const { cri } = this.#o;
    try {
      const [st, ver] = await Promise.all([
        cri.call<{ status: { conditions: { type: string; status: boolean; message: string }[] } | null; runtime_handlers?: { name: string }[] }>('runtime', 'Status', {}, { timeoutMs: 5000 }),
        cri.call<{ runtime_version: string }>('runtime', 'Version', {}, { timeoutMs: 5000 }),
      ]);
      const cond = st.status?.conditions.find((c) => c.type === 'RuntimeReady');
      return {
        reachable: true,
        ready: cond?.status === true,
        version: ver.runtime_version,
        handlers: (st.runtime_handlers ?? []).map((h) => h.name).filter(Boolean).sort(),
        message: cond?.message ?? '',
      };
    } catch (err) {
      return { reachable: false, ready: false, version: this.#runtime.version, handlers: this.#runtime.handlers, message: `berthd unreachable: ${(err as Error).message}` };
    }
  }

  /** One reconcile at a time; a change during a reconcile runs another right after. */
  async #loop(signal: AbortSignal): Promise<void> {
    let nextStatusAt = 0;
    while (!signal.aborted) {
      if (!this.#changes.raised) {
        await this.#changes.wait(signal);
        continue;
      }
      // Coalesce: changes arriving within the interval land in one write.
      const wait = nextStatusAt - Date.now();
      if (wait > 0) await sleep(wait, signal);
      this.#changes.lower();
      const ok = await this.#reconcile();
      nextStatusAt = Date.now() + this.#o.statusIntervalMs;
      if (!ok) {
        this.#writeFailures++;
        this.#changes.raise();
        await sleep(jittered({ initialMs: this.#o.timing.backoff.initialMs, maxMs: this.#o.timing.backoff.maxMs }, this.#writeFailures), signal);
      } else {
        this.#writeFailures = 0;
      }
    }
  }

  /** Returns false when an API write failed and should be retried. */
  async #reconcile(): Promise<boolean> {
    const node = this.#nodes.store.get(this.#o.nodeName);
    const labels = node ? this.#desiredLabels(node) : undefined;
    const effectiveLabels = { ...(node?.metadata.labels ?? {}), ...Object.fromEntries(Object.entries(labels ?? {}).filter(([, v]) => v !== null)) } as Record<string, string>;

    // Prefetches: only once both the node and the prefetches were listed, so a half-known
    // world never unmatches (and unpins) anything.
    let ok = true;
    if (node && this.#prefetches.synced) {
      const matching = [...this.#prefetches.store.values()].filter((p) => !p.metadata.deletionTimestamp && selects(p.spec.nodeSelector, effectiveLabels));
      this.#prefetcher.sync(matching);
      // berthd down: the pins go out when it answers again (its poll wakes this loop).
      if (this.#runtime.reachable) ok = (await this.#syncPins()) && ok;
    }
    if (node && labels) ok = (await this.#patchLabels(node, labels)) && ok;
    // The node as the label patch left it: the switch's writes are guarded by its resourceVersion.
    const current = this.#nodes.store.get(this.#o.nodeName);
    if (current) ok = (await this.#switch.reconcile(current)) && ok;
    if (node) ok = (await this.#writeStatus(node)) && ok;
    return ok;
  }

  #desiredLabels(node: Node): Record<string, string | null> {
    const rt = this.#runtime;
    const kubeletOnBerth = (node.status?.nodeInfo?.containerRuntimeVersion ?? '').startsWith('berth://');
    const want: Record<string, string> = {
      [LABEL_RUNTIME]: !rt.reachable || !rt.ready ? 'not-ready' : kubeletOnBerth ? 'ready' : 'installed',
    };
    if (rt.version && LABEL_VALUE.test(rt.version) && rt.version.length <= 63) want[LABEL_VERSION] = rt.version;
    if (rt.reachable) for (const h of rt.handlers) want[`${LABEL_HANDLER_PREFIX}${h}`] = 'true';
    const have = node.metadata.labels ?? {};
    const patch: Record<string, string | null> = {};
    for (const [k, v] of Object.entries(want)) if (have[k] !== v) patch[k] = v;
    // Handler labels of handlers berthd no longer offers go; other berth.io/ labels are kept.
    for (const k of Object.keys(have)) if (k.startsWith(LABEL_HANDLER_PREFIX) && rt.reachable && !(k in want)) patch[k] = null;
    return patch;
  }

  async #patchLabels(node: Node, patch: Record<string, string | null>): Promise<boolean> {
    if (Object.keys(patch).length === 0) return true;
    if (Object.keys(patch).some((k) => !k.startsWith(LABEL_PREFIX))) throw new Error('the agent only writes berth.io/ labels');
    try {
      const updated = await this.#o.kube.patch<Node>(`/api/v1/nodes/${encodeURIComponent(node.metadata.name)}`, { metadata: { labels: patch } });
      // Take the answer as the node's state now (unless the watch brought a newer one already).
      this.#nodes.accept(updated, node.metadata.resourceVersion);
      this.#o.log.info({ labels: patch }, 'node labels updated');
      return true;
    } catch (err) {
      this.#o.log.warn({ err: (err as Error).message }, 'patching node labels failed; will retry');
      return false;
    }
  }

  async #syncPins(): Promise<boolean> {
    const pins = this.#prefetcher.pins();
    const key = JSON.stringify(pins);
    if (key === this.#lastPins) return true;
    try {
      await this.#o.cri.call('pins', 'SetPins', { owner: this.#o.pinOwner, images: pins }, { timeoutMs: 10_000 });
      this.#lastPins = key;
      this.#o.log.info({ pins: pins.length }, 'pins set in berthd');
      return true;
    } catch (err) {
      this.#o.log.warn({ err: (err as Error).message }, 'setting pins in berthd failed; will retry');
      return false;
    }
  }

  #status(node: Node): BerthNodeStatus {
    const rt = this.#runtime;
    this.#conditions = setCondition(this.#conditions, {
      type: 'RuntimeReady',
      status: rt.ready ? 'True' : 'False',
      reason: !rt.reachable ? 'BerthdUnreachable' : rt.ready ? 'Ready' : 'RuntimeNotReady',
      message: rt.message,
    });
    const missing = this.#missingHandlers(node);
    this.#conditions = setCondition(this.#conditions, {
      type: 'RuntimeClassesReady',
      status: missing.length === 0 ? 'True' : 'False',
      reason: missing.length === 0 ? 'HandlersPresent' : 'HandlerMissing',
      message: missing.length === 0 ? 'every berth RuntimeClass names a handler this node has' : missing.join('; '),
    });
    return { runtimeReady: rt.ready, version: rt.version, handlers: rt.handlers, conditions: this.#conditions, prefetches: this.#prefetcher.status() };
  }

  /** berth's RuntimeClasses (those selecting on berth.io/runtime) whose handler this node lacks. */
  #missingHandlers(node: Node): string[] {
    if (!this.#runtime.reachable) return [];
    const kubeletHandlers = node.status?.runtimeHandlers?.map((h) => h.name);
    const out: string[] = [];
    for (const rc of [...this.#classes.store.values()].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))) {
      if (!rc.scheduling?.nodeSelector || !(LABEL_RUNTIME in rc.scheduling.nodeSelector)) continue;
      if (!this.#runtime.handlers.includes(rc.handler)) {
        out.push(`RuntimeClass ${rc.metadata.name} wants handler ${rc.handler}, which berthd does not offer (configure [runtime.handlers.${rc.handler}] and install its binary)`);
      } else if (kubeletHandlers && kubeletHandlers.length > 0 && !kubeletHandlers.includes(rc.handler)) {
        out.push(`RuntimeClass ${rc.metadata.name} wants handler ${rc.handler}, which the kubelet does not list in node.status.runtimeHandlers`);
      }
    }
    return out;
  }

  async #writeStatus(node: Node): Promise<boolean> {
    let status = this.#status(node);
    const text = JSON.stringify(status);
    if (text === this.#lastStatus) return true;
    const { kube, nodeName, log } = this.#o;
    const path = `${resourcePath(GROUP, VERSION, 'berthnodes')}/${encodeURIComponent(nodeName)}`;
    try {
      if (!this.#berthNodeExists) {
        const owner = node.metadata.uid ? { ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: nodeName, uid: node.metadata.uid }] } : {};
        const body: BerthNode = { apiVersion: API_VERSION, kind: 'BerthNode', metadata: { name: nodeName, ...owner }, spec: {} };
        try {
          await kube.create(resourcePath(GROUP, VERSION, 'berthnodes'), body);
        } catch (err) {
          if (!(err instanceof ApiError && err.code === 409)) throw err;
          // An earlier agent's: keep what only it knew, how the last kubelet switch went (the
          // switch itself restarts this agent).
          const old = (await kube.get<BerthNode>(path)).status?.conditions?.find((c) => c.type === 'KubeletSwitch');
          if (old && !this.#conditions.some((c) => c.type === old.type)) {
            this.#conditions = [...this.#conditions, old].sort((a, b) => a.type.localeCompare(b.type));
            status = this.#status(node);
          }
        }
        this.#berthNodeExists = true;
      }
      await kube.patch(`${path}/status`, { status });
      this.#lastStatus = JSON.stringify(status);
      this.#o.metrics.inc('berth_controller_status_writes_total', { kind: 'BerthNode' });
      return true;
    } catch (err) {
      // Deleted meanwhile (an admin, or the Node's garbage collector): create it again next time.
      if (err instanceof ApiError && err.code === 404) this.#berthNodeExists = false;
      log.warn({ err: (err as Error).message }, 'writing BerthNode status failed; will retry with the latest status');
      return false;
    }
  }
}

/** A nodeSelector map matches when every pair is among the labels; empty or absent matches all. */
export function selects(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  return Object.entries(selector ?? {}).every(([k, v]) => labels[k] === v);
}
