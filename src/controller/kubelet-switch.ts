// The node agent's side of the kubelet switch, driven by the Node's `berth.io/switch` label:
// `requested` → refuse unless cordoned and drained, else taint `berth.io/switching:NoSchedule`, ask
// berthd (berth.v1.Node, which runs `berth-install switch --drained` in a host unit) and label
// `switching`; once the Node is Ready with a `berth://` runtime: `done`, untainted. A failed switch,
// or a kubelet that does not come back on berth in time, is reverted: `failed`. An admin's `revert`
// ends in `reverted`. All state lives in the label and in berthd's SwitchStatus, so an agent killed
// at any point (the switch removes the old runtime's pods, this one's too) picks up where it was.
import type { Logger } from 'pino';
import type { CriClient } from '../client/cri-client.ts';
import type { Condition, KubeObject } from './api.ts';
import { LABEL_SWITCH, TAINT_SWITCHING } from './api.ts';
import type { Kube } from './kube.ts';

export interface SwitchNode extends KubeObject {
  spec?: { unschedulable?: boolean; taints?: { key: string; value?: string; effect: string }[] };
  status?: {
    nodeInfo?: { containerRuntimeVersion?: string };
    conditions?: { type: string; status: string }[];
  };
}

interface Pod extends KubeObject {
  status?: { phase?: string };
}

interface SwitchStatus {
  state: 'SWITCH_STATE_IDLE' | 'SWITCH_STATE_RUNNING' | 'SWITCH_STATE_SUCCEEDED' | 'SWITCH_STATE_FAILED';
  revert: boolean;
  message: string;
  finished_at_ms: number;
}

export interface KubeletSwitchOptions {
  nodeName: string;
  kube: Kube;
  cri: CriClient;
  log: Logger;
  /** How long the Node has, after the host unit succeeded, to be Ready on berth (ms). */
  readyTimeoutMs: number;
  /** Sets the BerthNode's `KubeletSwitch` condition. */
  onCondition(c: Omit<Condition, 'lastTransitionTime'>): void;
  /** The Node as the API server answered a write (the watch will agree). */
  onNode(node: SwitchNode): void;
}

/** Label values the agent acts on; the others (refused, done, failed, reverted) are final. */
const ACTIVE = new Set(['requested', 'revert', 'switching', 'reverting']);

export class KubeletSwitch {
  readonly #o: KubeletSwitchOptions;
  /** When this agent first saw a switch that berthd knows nothing of (berthd restarted meanwhile). */
  #idleSince = 0;

  constructor(options: KubeletSwitchOptions) {
    this.#o = options;
  }

  /** Whether the label asks for work: the agent then polls instead of waiting for events. */
  active(node: SwitchNode | undefined): boolean {
    return ACTIVE.has(node?.metadata.labels?.[LABEL_SWITCH] ?? '');
  }

  /** One step; false when a call failed and should be retried. */
  async reconcile(node: SwitchNode): Promise<boolean> {
    try {
      switch (node.metadata.labels?.[LABEL_SWITCH]) {
        case 'requested':
          return await this.#begin(node, false);
        case 'revert':
          return await this.#begin(node, true);
        case 'switching':
          return await this.#follow(node, false);
        case 'reverting':
          return await this.#follow(node, true);
        default:
          return true;
      }
    } catch (err) {
      this.#o.log.warn({ err: (err as Error).message }, 'kubelet switch step failed; will retry');
      return false;
    }
  }

  async #begin(node: SwitchNode, revert: boolean): Promise<boolean> {
    const name = this.#o.nodeName;
    if (!revert) {
      if (node.spec?.unschedulable !== true) return this.#refuse(node, 'NotCordoned', `node ${name} is not cordoned; run kubectl cordon ${name}, drain it, then label it berth.io/switch=requested again`);
      const blocking = await this.#podsInTheWay();
      if (blocking.length > 0) {
        const shown = blocking.slice(0, 5).join(', ') + (blocking.length > 5 ? ` and ${blocking.length - 5} more` : '');
        return this.#refuse(node, 'NotDrained', `node ${name} still runs ${blocking.length} pod(s) other than DaemonSet and static pods (${shown}); run kubectl drain ${name} --ignore-daemonsets, then label it berth.io/switch=requested again`);
      }
    }
    // Tainted before the host is asked: nothing new lands here while the kubelet moves.
    node = await this.#patch(node, {}, true);
    await this.#ask(revert);
    await this.#patch(node, { [LABEL_SWITCH]: revert ? 'reverting' : 'switching' }, true);
    this.#o.onCondition({ type: 'KubeletSwitch', status: 'Unknown', reason: revert ? 'Reverting' : 'Switching', message: `berthd runs berth-install ${revert ? 'revert' : 'switch --drained'} in host unit berth-${revert ? 'revert' : 'switch'}` });
    return true;
  }

  async #follow(node: SwitchNode, revert: boolean): Promise<boolean> {
    const st = await this.#o.cri.call<SwitchStatus>('node', 'SwitchStatus', {}, { timeoutMs: 10_000 });
    if (st.state === 'SWITCH_STATE_RUNNING') return true;
    if (!revert && onBerth(node)) {
      await this.#patch(node, { [LABEL_SWITCH]: 'done' }, false);
      this.#o.onCondition({ type: 'KubeletSwitch', status: 'True', reason: 'Switched', message: `the kubelet runs on berth (${node.status?.nodeInfo?.containerRuntimeVersion})` });
      return true;
    }
    const ours = st.state !== 'SWITCH_STATE_IDLE' && st.revert === revert;
    if (!ours) {
      // berthd restarted (its status is in memory) or ran the other operation: ask again; both
      // berth-install verbs converge when rerun.
      this.#idleSince ||= Date.now();
      if (!revert && Date.now() - this.#idleSince > this.#o.readyTimeoutMs) return this.#fail(node, 'berthd lost track of the switch and the kubelet is not on berth');
      await this.#ask(revert);
      return true;
    }
    this.#idleSince = 0;
    if (revert) {
      const ok = st.state === 'SWITCH_STATE_SUCCEEDED';
      await this.#patch(node, { [LABEL_SWITCH]: ok ? 'reverted' : 'failed' }, false);
      this.#o.onCondition({ type: 'KubeletSwitch', status: 'False', reason: ok ? 'Reverted' : 'RevertFailed', message: ok ? 'the kubelet is back on its previous runtime' : `revert failed: ${st.message}` });
      return true;
    }
    if (st.state === 'SWITCH_STATE_FAILED') return this.#fail(node, `the switch failed: ${st.message}`);
    if (Date.now() - st.finished_at_ms > this.#o.readyTimeoutMs) {
      return this.#fail(node, `the kubelet was not Ready with a berth:// runtime within ${Math.round(this.#o.readyTimeoutMs / 1000)} s of the switch (runtime: ${node.status?.nodeInfo?.containerRuntimeVersion ?? 'unknown'})`);
    }
    return true;
  }

  async #fail(node: SwitchNode, why: string): Promise<boolean> {
    await this.#ask(true);
    await this.#patch(node, { [LABEL_SWITCH]: 'failed' }, false);
    this.#o.onCondition({ type: 'KubeletSwitch', status: 'False', reason: 'SwitchFailed', message: `${why}; the kubelet's backup is being restored (journalctl -u berth-revert on the node)` });
    this.#o.log.error({ why }, 'kubelet switch failed; reverting');
    return true;
  }

  async #refuse(node: SwitchNode, reason: string, message: string): Promise<boolean> {
    await this.#patch(node, { [LABEL_SWITCH]: 'refused' }, false);
    this.#o.onCondition({ type: 'KubeletSwitch', status: 'False', reason, message });
    this.#o.log.warn({ reason }, message);
    return true;
  }

  async #ask(revert: boolean): Promise<void> {
    await this.#o.cri.call('node', 'SwitchKubelet', revert ? { revert: true } : { drained: true }, { timeoutMs: 10_000 });
  }

  /** Pods that keep the node from counting as drained: all but DaemonSet, static and finished ones. */
  async #podsInTheWay(): Promise<string[]> {
    const query = `fieldSelector=${encodeURIComponent(`spec.nodeName=${this.#o.nodeName}`)}`;
    const list = await this.#o.kube.get<{ items: Pod[] }>(`/api/v1/pods?${query}`);
    return list.items
      .filter((p) => !p.metadata.ownerReferences?.some((o) => o.kind === 'DaemonSet'))
      .filter((p) => !p.metadata.annotations?.['kubernetes.io/config.mirror'])
      .filter((p) => p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed')
      .map((p) => `${p.metadata.namespace}/${p.metadata.name}`)
      .sort();
  }

  /**
   * One merge patch of berth.io/switch labels and the switching taint, guarded by the Node's
   * resourceVersion: taints are a list, so a write from a stale view would drop someone else's.
   */
  async #patch(node: SwitchNode, labels: Record<string, string>, tainted: boolean): Promise<SwitchNode> {
    const taints = node.spec?.taints ?? [];
    const has = taints.some((t) => t.key === TAINT_SWITCHING);
    if (Object.keys(labels).every((k) => node.metadata.labels?.[k] === labels[k]) && has === tainted) return node;
    const others = taints.filter((t) => t.key !== TAINT_SWITCHING);
    const next = tainted ? [...others, { key: TAINT_SWITCHING, effect: 'NoSchedule' }] : others;
    const patch: Record<string, unknown> = { metadata: { resourceVersion: node.metadata.resourceVersion, labels } };
    if (has !== tainted) patch.spec = { taints: next.length > 0 ? next : null };
    const updated = await this.#o.kube.patch<SwitchNode>(`/api/v1/nodes/${encodeURIComponent(node.metadata.name)}`, patch);
    this.#o.onNode(updated);
    this.#o.log.info({ labels, tainted }, 'kubelet switch: node updated');
    return updated;
  }
}

/** The kubelet came back on berth: Ready, with a `berth://` runtime. */
function onBerth(node: SwitchNode): boolean {
  const ready = node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
  return ready && (node.status?.nodeInfo?.containerRuntimeVersion ?? '').startsWith('berth://');
}
