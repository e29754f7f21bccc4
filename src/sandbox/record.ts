// What berth remembers about one pod sandbox, persisted as <root>/metadata/sandboxes/<id>.json, and
// the check that a record read back from disk has that shape.
import type { PodSandboxConfig__Output } from '../cri/gen/runtime/v1/PodSandboxConfig.ts';

/** Who made an object: the kubelet (over CRI) or the berth CLI. CRI lists leave CLI objects out. */
export type Owner = 'cri' | 'cli';

export interface SandboxRecord {
  id: string;
  owner: Owner;
  /** `name_namespace_uid_attempt`, unique among sandboxes (the kubelet's naming). */
  key: string;
  config: PodSandboxConfig__Output;
  runtimeHandler: string;
  /** Nanoseconds since the epoch. */
  createdAt: number;
  state: 'ready' | 'notready';
  hostNetwork: boolean;
  hostIpc: boolean;
  hostPid: boolean;
  /** Pinned namespaces (bind mounts of nsfs files); absent when shared with the host. */
  netnsPath?: string;
  ipcPath?: string;
  utsPath?: string;
  /** The process holding the pod's PID namespace (pid: POD only): its PID and start time. */
  pidHolder?: { pid: number; startTime: number };
  /** Pod IPs from CNI, primary first. */
  ips: string[];
  /** Directory with the pod's hostname, hosts, resolv.conf and /dev/shm mount. */
  dir: string;
  cgroupParent: string;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const optStr = (v: unknown): boolean => v === undefined || typeof v === 'string';

export function isSandboxRecord(v: unknown): v is SandboxRecord {
  if (!isObj(v)) return false;
  const cfg = v.config;
  return (
    typeof v.id === 'string' && /^[a-f0-9]{64}$/.test(v.id) &&
    (v.owner === 'cri' || v.owner === 'cli') &&
    typeof v.key === 'string' &&
    isObj(cfg) && isObj(cfg.metadata) && isObj(cfg.labels) && isObj(cfg.annotations) &&
    typeof v.runtimeHandler === 'string' &&
    typeof v.createdAt === 'number' &&
    (v.state === 'ready' || v.state === 'notready') &&
    typeof v.hostNetwork === 'boolean' && typeof v.hostIpc === 'boolean' && typeof v.hostPid === 'boolean' &&
    optStr(v.netnsPath) && optStr(v.ipcPath) && optStr(v.utsPath) &&
    (v.pidHolder === undefined || (isObj(v.pidHolder) && typeof v.pidHolder.pid === 'number' && typeof v.pidHolder.startTime === 'number')) &&
    Array.isArray(v.ips) && v.ips.every((ip) => typeof ip === 'string') &&
    typeof v.dir === 'string' && typeof v.cgroupParent === 'string'
  );
}
