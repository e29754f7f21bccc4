// What berth remembers about one container, persisted as <root>/metadata/containers/<id>.json, and
// the check that a record read back from disk has that shape.
import type { ContainerConfig__Output } from '../cri/gen/runtime/v1/ContainerConfig.ts';
import type { Mount } from '../cri/gen/runtime/v1/Mount.ts';
import type { Owner } from '../sandbox/record.ts';

export type ContainerStateName = 'created' | 'running' | 'exited' | 'unknown';

export interface ContainerRecord {
  id: string;
  owner: Owner;
  sandboxId: string;
  /** `name_attempt` is unique within its sandbox. */
  key: string;
  config: ContainerConfig__Output;
  /** The image as asked for, its ID, and the ref reported in status (repo digest or ID). */
  image: { requested: string; id: string; ref: string };
  runtimeHandler: string;
  state: ContainerStateName;
  /** Nanoseconds since the epoch; 0 = not yet. */
  createdAt: number;
  startedAt: number;
  finishedAt: number;
  exitCode: number;
  reason: string;
  message: string;
  /** Full path of the CRI log (pod log directory + log_path), '' when the kubelet asked for none. */
  logPath: string;
  /** Mounts as the status reports them (CRI shape, host paths resolved). */
  mounts: Mount[];
  /** The container's main process on the host (0 before it exists) and conmon's. */
  pid: number;
  conmonPid: number;
  /** Signal StopContainer sends first: the image's StopSignal or SIGTERM. */
  stopSignal: string;
  /** The OCI cgroups path runc was given. */
  cgroupsPath: string;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function isContainerRecord(v: unknown): v is ContainerRecord {
  if (!isObj(v)) return false;
  const img = v.image;
  return (
    typeof v.id === 'string' && /^[a-f0-9]{64}$/.test(v.id) &&
    (v.owner === 'cri' || v.owner === 'cli') &&
    typeof v.sandboxId === 'string' && typeof v.key === 'string' &&
    isObj(v.config) && isObj(v.config.metadata) &&
    isObj(img) && typeof img.requested === 'string' && typeof img.id === 'string' && typeof img.ref === 'string' &&
    typeof v.runtimeHandler === 'string' &&
    (v.state === 'created' || v.state === 'running' || v.state === 'exited' || v.state === 'unknown') &&
    ['createdAt', 'startedAt', 'finishedAt', 'exitCode', 'pid', 'conmonPid'].every((k) => typeof v[k] === 'number') &&
    typeof v.reason === 'string' && typeof v.message === 'string' && typeof v.logPath === 'string' &&
    Array.isArray(v.mounts) && typeof v.stopSignal === 'string' && typeof v.cgroupsPath === 'string'
  );
}
