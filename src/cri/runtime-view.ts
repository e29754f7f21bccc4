// Sandbox and container records as the CRI reports them, and the list filters (ID prefix, state,
// label selector, owner). Objects the berth CLI owns are left out of CRI lists unless the label
// selector names their owner (`io.berth.owner: cli`), so a kubelet never sees or kills them.
import type { ContainerRecord } from '../container/record.ts';
import type { SandboxRecord } from '../sandbox/record.ts';
import type { Container } from './gen/runtime/v1/Container.ts';
import type { ContainerStatus } from './gen/runtime/v1/ContainerStatus.ts';
import type { PodSandbox } from './gen/runtime/v1/PodSandbox.ts';
import type { PodSandboxStatus } from './gen/runtime/v1/PodSandboxStatus.ts';
import type { ContainerState__Output } from './gen/runtime/v1/ContainerState.ts';

/** The pseudo-label a selector uses to ask for objects by owner. */
export const OWNER_LABEL = 'io.berth.owner';

/** Whether an object with these labels and owner passes a CRI label selector. */
export function selects(selector: Record<string, string> | undefined, labels: Record<string, string>, owner: string): boolean {
  const sel = selector ?? {};
  if ((sel[OWNER_LABEL] ?? 'cri') !== owner) return false;
  return Object.entries(sel).every(([k, v]) => k === OWNER_LABEL || labels[k] === v);
}

export const sandboxState = (sb: SandboxRecord): 'SANDBOX_READY' | 'SANDBOX_NOTREADY' => (sb.state === 'ready' ? 'SANDBOX_READY' : 'SANDBOX_NOTREADY');

export function toPodSandbox(sb: SandboxRecord): PodSandbox {
  return {
    id: sb.id,
    metadata: sb.config.metadata,
    state: sandboxState(sb),
    created_at: sb.createdAt,
    labels: sb.config.labels,
    annotations: sb.config.annotations,
    runtime_handler: sb.runtimeHandler,
  };
}

export function toPodSandboxStatus(sb: SandboxRecord): PodSandboxStatus {
  const [ip = '', ...more] = sb.ips;
  const ns = sb.config.linux?.security_context?.namespace_options;
  return {
    ...toPodSandbox(sb),
    network: { ip, additional_ips: more.map((a) => ({ ip: a })) },
    linux: {
      namespaces: {
        options: {
          network: sb.hostNetwork ? 'NODE' : 'POD',
          ipc: sb.hostIpc ? 'NODE' : 'POD',
          pid: ns?.pid ?? 'POD',
          target_id: '',
        },
      },
    },
  };
}

const CONTAINER_STATES: Record<ContainerRecord['state'], ContainerState__Output> = {
  created: 'CONTAINER_CREATED',
  running: 'CONTAINER_RUNNING',
  exited: 'CONTAINER_EXITED',
  unknown: 'CONTAINER_UNKNOWN',
};

export const containerState = (c: ContainerRecord): ContainerState__Output => CONTAINER_STATES[c.state];

export function toContainer(c: ContainerRecord): Container {
  return {
    id: c.id,
    pod_sandbox_id: c.sandboxId,
    metadata: c.config.metadata,
    image: { image: c.image.requested, annotations: c.config.image?.annotations ?? {}, user_specified_image: c.image.requested },
    image_ref: c.image.ref,
    image_id: c.image.id,
    state: containerState(c),
    created_at: c.createdAt,
    labels: c.config.labels,
    annotations: c.config.annotations,
  };
}

export function toContainerStatus(c: ContainerRecord): ContainerStatus {
  return {
    ...toContainer(c),
    started_at: c.startedAt,
    finished_at: c.finishedAt,
    exit_code: c.exitCode,
    reason: c.reason,
    message: c.message,
    mounts: c.mounts,
    log_path: c.logPath,
    resources: c.config.linux?.resources ? { linux: c.config.linux.resources } : null,
    stop_signal: `SIGNAL_${c.stopSignal}` as ContainerStatus['stop_signal'],
  };
}
