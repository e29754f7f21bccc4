// The node agent's side of the kubelet switch, driven by the Node's `berth.io/switch` label:
// `requested` → refuse unless cordoned and drained, else taint `berth.io/switching:NoSchedule`, ask
// berthd (berth.v1.Node, which runs `berth-install switch --drained` in a host unit) and label
// `switching`; once the Node is Ready with a `berth://` runtime: `done`, untainted. A failed switch,
// or a kubelet that does not come back on berth in time, is reverted: `failed`. An admin's `revert`
// ends in `reverted`. Either revert is followed until the kubelet has reported the Node Ready on
// its previous runtime since the revert began; if it has not within the timeout (or the revert
// unit failed), the condition says `RevertFailed`. All state lives in the label, the BerthNode's
// `KubeletSwitch` condition and berthd's SwitchStatus, so an agent killed at any point (the switch
// removes the old runtime's pods, this one's too) picks up where it was.
import type { Logger } from 'pino';
import type { CriClient } from '../client/cri-client.ts';
import type { Condition, KubeObject } from './api.ts';
import { LABEL_SWITCH, TAINT_SWITCHING } from './api.ts';
import type { Kube } from './kube.ts';

export interface SwitchNode extends KubeObject {
  spec?: { unschedulable?: boolean; taints?: { key: string; value?: string; effect: string }[] };
  status?: {
    nodeInfo?: { containerRuntimeVersion?: string };
    conditions?: { type: string; status: string; lastHeartbeatTime?: string }[];
  };
}

interface Pod extends KubeObject {
  status?: { phase?: string };
}

interface SwitchStatus {
  state: 'SWITCH_STATE_IDLE' | 'SWITCH_STATE_RUNNING' | 'SWITCH_STATE_SUCCEEDED' | 'SWITCH_STATE_FAILED';
  revert: boolean;
  message: string;
  started_at_ms: number;
  finished_at_ms: number;
}

export interface KubeletSwitchOptions {
  nodeName: string;
  kube: Kube;
  cri: CriClient;
  log: Logger;
  /** How long the Node has, after the host unit succeeded, to be Ready on berth, or back (ms). */
  readyTimeoutMs: number;
  /** The BerthNode's `KubeletSwitch` condition as this agent knows it (restored after a restart). */
  condition(): Condition | undefined;
  /** Sets the BerthNode's `KubeletSwitch` condition. */
  onCondition(c: Omit<Condition, 'lastTransitionTime'>): void;
  /** The Node as the API server answered a write based on version `basedOn` (the watch will agree). */
  onNode(node: SwitchNode, basedOn: string | undefined): void;
}

/** Label values the agent acts on; the others (refused, done, failed, reverted) are final. */
const ACTIVE = new Set(['requested', 'revert', 'switching', 'reverting']);
/** Ends the `SwitchFailed` message while the agent waits for the reverted kubelet to come back. */
const RESTORING = "; the kubelet's backup is being restored (journalctl -u berth-revert on the node)";

export class KubeletSwitch {
  readonly #o: KubeletSwitchOptions;
  /** When this agent first saw a switch that berthd knows nothing of (berthd restarted meanwhile). */
  #idleSince = 0;

  constructor(options: KubeletSwitchOptions) {
    this.#o = options;
  }

  /** Whether the label asks for work: the agent then polls instead of waiting for events. */
  active(node: SwitchNode | undefined): boolean {
    const label = node?.metadata.labels?.[LABEL_SWITCH] ?? '';
    return ACTIVE.has(label) || (label === 'failed' && this.#restoring() !== undefined);
  }

  /** After a failed switch, until the kubelet is back: why the switch failed. */
  #restoring(): string | undefined {
    const c = this.#o.condition();
    return c?.reason === 'SwitchFailed' && c.status === 'Unknown' && c.message.endsWith(RESTORING) ? c.message.slice(0, -RESTORING.length) : undefined;
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
          return await this.#followSwitch(node);
        case 'reverting':
          return await this.#followRevert(node, undefined);
        case 'failed': {
          const why = this.#restoring();
          return why === undefined ? true : await this.#followRevert(node, why);
        }
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

  async #followSwitch(node: SwitchNode): Promise<boolean> {
    const st = await this.#status();
    if (st.state === 'SWITCH_STATE_RUNNING') return true;
    if (onBerth(node)) {
      await this.#patch(node, { [LABEL_SWITCH]: 'done' }, false);
      this.#o.onCondition({ type: 'KubeletSwitch', status: 'True', reason: 'Switched', message: `the kubelet runs on berth (${node.status?.nodeInfo?.containerRuntimeVersion})` });
      return true;
    }
    if (st.state === 'SWITCH_STATE_IDLE' || st.revert) {
      // berthd restarted (its status is in memory) or ran the other operation: ask again; both
      // berth-install verbs converge when rerun.
      this.#idleSince ||= Date.now();
      if (Date.now() - this.#idleSince > this.#o.readyTimeoutMs) return this.#fail(node, 'berthd lost track of the switch and the kubelet is not on berth');
      await this.#ask(false);
      return true;
    }
    this.#idleSince = 0;
    if (st.state === 'SWITCH_STATE_FAILED') return this.#fail(node, `the switch failed: ${st.message}`);
    if (Date.now() - st.finished_at_ms > this.#o.readyTimeoutMs) {
      return this.#fail(node, `the kubelet was not Ready with a berth:// runtime within ${Math.round(this.#o.readyTimeoutMs / 1000)} s of the switch (runtime: ${node.status?.nodeInfo?.containerRuntimeVersion ?? 'unknown'})`);
    }
    return true;
  }

  /**
   * A revert: an admin's (`reverting`; `switchFailed` undefined) or the one after a failed switch
   * (label `failed`; why it failed). Done only when the host unit succeeded and the kubelet, since
   * the revert began, reported the Node Ready on a runtime other than berth: restored files alone
   * do not bring a node back (a kubelet left stopped, or still on berth, is the breakage to catch).
   */
  async #followRevert(node: SwitchNode, switchFailed: string | undefined): Promise<boolean> {
    const st = await this.#status();
    if (st.state === 'SWITCH_STATE_RUNNING') return true;
    if (st.state === 'SWITCH_STATE_IDLE' || !st.revert) {
      // berthd restarted and forgot, or still shows the switch: ask again (a revert converges).
      await this.#ask(true);
      return true;
    }
    const runtime = node.status?.nodeInfo?.containerRuntimeVersion || 'unknown';
    let notBack: string | undefined;
    if (st.state === 'SWITCH_STATE_FAILED') {
      notBack = `restoring the kubelet's backup failed: ${st.message}; restore the files under /var/lib/berth/installer/kubelet-backup by hand and restart the kubelet (journalctl -u berth-revert on the node)`;
    } else if (backOnOldRuntime(node, st.started_at_ms)) {
      const back = `the kubelet is back on its previous runtime (${runtime}) and Ready`;
      if (switchFailed === undefined) {
        await this.#patch(node, { [LABEL_SWITCH]: 'reverted' }, false);
        this.#o.onCondition({ type: 'KubeletSwitch', status: 'False', reason: 'Reverted', message: back });
      } else {
        this.#o.onCondition({ type: 'KubeletSwitch', status: 'False', reason: 'SwitchFailed', message: `${switchFailed}; reverted: ${back}` });
      }
      this.#o.log.info({ runtime }, 'kubelet revert verified');
      return true;
    } else if (Date.now() - st.finished_at_ms > this.#o.readyTimeoutMs) {
      notBack = `the kubelet's files were restored, but ${Math.round(this.#o.readyTimeoutMs / 1000)} s later the kubelet has not reported the Node Ready on its previous runtime since the revert (${notBackDetail(node, st.started_at_ms)}); check the kubelet and its runtime on the node (journalctl -u kubelet -u berth-revert)`;
    }
    if (notBack === undefined) return true;
    await this.#patch(node, { [LABEL_SWITCH]: 'failed' }, false);
    this.#o.onCondition({ type: 'KubeletSwitch', status: 'False', reason: 'RevertFailed', message: switchFailed === undefined ? `revert failed: ${notBack}` : `${switchFailed}; the revert did not bring the node back: ${notBack}` });
    this.#o.log.error({ why: notBack }, 'kubelet revert did not bring the node back');
    return true;
  }

  async #status(): Promise<SwitchStatus> {
    return this.#o.cri.call<SwitchStatus>('node', 'SwitchStatus', {}, { timeoutMs: 10_000 });
  }

  async #fail(node: SwitchNode, why: string): Promise<boolean> {
    await this.#ask(true);
    await this.#patch(node, { [LABEL_SWITCH]: 'failed' }, false);
    // Unknown until the kubelet is seen back on its previous runtime (#followRevert).
    this.#o.onCondition({ type: 'KubeletSwitch', status: 'Unknown', reason: 'SwitchFailed', message: `${why}${RESTORING}` });
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
    this.#o.onNode(updated, node.metadata.resourceVersion);
    this.#o.log.info({ labels, tainted }, 'kubelet switch: node updated');
    return updated;
  }
}

/** The Ready condition's heartbeat (second precision) is at or after `sinceMs`: posted since then. */
function readySince(node: SwitchNode, sinceMs: number): { ready: boolean; fresh: boolean } {
  const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
  const beat = Date.parse(ready?.lastHeartbeatTime ?? '');
  return { ready: ready?.status === 'True', fresh: beat >= Math.floor(sinceMs / 1000) * 1000 };
}

/**
 * The kubelet is back after a revert that started at `sinceMs`: it reported the Node Ready since
 * then (a Ready left over from before stays True for the node-monitor grace period) on a runtime
 * that is not berth (a kubelet that was never restarted still says berth://).
 */
function backOnOldRuntime(node: SwitchNode, sinceMs: number): boolean {
  const runtime = node.status?.nodeInfo?.containerRuntimeVersion ?? '';
  const { ready, fresh } = readySince(node, sinceMs);
  return ready && fresh && runtime !== '' && !runtime.startsWith('berth://');
}

function notBackDetail(node: SwitchNode, sinceMs: number): string {
  const runtime = node.status?.nodeInfo?.containerRuntimeVersion || 'unknown';
  const { ready, fresh } = readySince(node, sinceMs);
  if (!fresh) return `no Node status from the kubelet since then; runtime ${runtime}`;
  if (!ready) return `the Node is not Ready; runtime ${runtime}`;
  return `the Node is Ready but still on ${runtime}: the kubelet was not restarted onto its previous runtime`;
}

/** The kubelet came back on berth: Ready, with a `berth://` runtime. */
function onBerth(node: SwitchNode): boolean {
  const ready = node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
  return ready && (node.status?.nodeInfo?.containerRuntimeVersion ?? '').startsWith('berth://');
}
