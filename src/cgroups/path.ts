// Names of a container's cgroup: the cgroupsPath berth writes in the OCI spec for each cgroup driver,
// and where that cgroup lives on the filesystem.
import { join, posix } from 'node:path';
import { invalidArgument } from '../util/errors.ts';

export type CgroupDriver = 'cgroupfs' | 'systemd';

/** The prefix of a container's systemd scope: berth-<id>.scope. */
export const SYSTEMD_SCOPE_PREFIX = 'berth';

/**
 * The OCI cgroupsPath for container `id` under the pod's cgroup `parent`. cgroupfs: a path,
 * "/parent/id". systemd: runc's "slice:prefix:name", which becomes the unit berth-<id>.scope in that
 * slice (the kubelet gives systemd parents as slice names like kubepods-besteffort.slice).
 */
export function cgroupsPathFor(driver: CgroupDriver, parent: string, id: string): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(id)) throw invalidArgument(`cgroup name ${JSON.stringify(id)} may only hold letters, digits, "_", "." and "-"`);
  if (driver === 'systemd') {
    const slice = parent || 'system.slice';
    if (!/^[A-Za-z0-9_.-]+\.slice$/.test(slice)) {
      throw invalidArgument(`cgroup parent ${JSON.stringify(parent)} is not a systemd slice name (like kubepods-besteffort.slice) as the systemd cgroup driver needs`);
    }
    return `${slice}:${SYSTEMD_SCOPE_PREFIX}:${id}`;
  }
  if (parent.includes(':') || parent.split('/').includes('..')) {
    throw invalidArgument(`cgroup parent ${JSON.stringify(parent)} is not a cgroupfs path (like /kubepods/besteffort/pod…)`);
  }
  return posix.join('/', parent, id);
}

/**
 * A cgroupsPath as a path below a hierarchy's root. systemd slices nest by their dashes:
 * "a-b.slice" lives at a.slice/a-b.slice, and "a-b.slice:berth:x" at a.slice/a-b.slice/berth-x.scope.
 */
export function cgroupRelativePath(cgroupsPath: string): string {
  const parts = cgroupsPath.split(':');
  if (parts.length === 3) {
    const [slice = '', prefix = '', name = ''] = parts;
    return posix.join(...expandSlice(slice), `${prefix}-${name}.scope`);
  }
  // Normalised from "/", so ".." stops at the hierarchy's root.
  return posix.normalize(`/${cgroupsPath}`).slice(1);
}

function expandSlice(slice: string): string[] {
  if (slice === '-.slice' || slice === '') return [];
  const base = slice.replace(/\.slice$/, '');
  const parts = base.split('-');
  return parts.map((_, i) => `${parts.slice(0, i + 1).join('-')}.slice`);
}

/** The directory of a cgroup in one v1 controller's tree, or in the v2 tree when `controller` is absent. */
export function cgroupDir(root: string, cgroupsPath: string, controller?: string): string {
  return controller ? join(root, controller, cgroupRelativePath(cgroupsPath)) : join(root, cgroupRelativePath(cgroupsPath));
}
