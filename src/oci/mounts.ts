// The filesystems every container gets (proc, /dev, devpts, mqueue, sysfs, cgroup) and the CRI's
// bind mounts (volumes) turned into OCI mounts with their read-only flag and propagation.
import { mkdir, realpath } from 'node:fs/promises';
import { isAbsolute, posix } from 'node:path';
import type { Mount__Output } from '../cri/gen/runtime/v1/Mount.ts';
import { BerthError, errorMessage, invalidArgument } from '../util/errors.ts';
import type { OciMount } from './types.ts';
import { mountPoints } from '../util/mount.ts';

/**
 * The kernel filesystems a container sees by default, as runc's and containerd's defaults give them.
 * /dev/shm is absent on purpose: the pod's shared /dev/shm is the sandbox's to add. A privileged
 * container gets /sys and /sys/fs/cgroup writable, as containerd and CRI-O do.
 */
export function defaultMounts(opts: { privileged?: boolean } = {}): OciMount[] {
  const sysMode = opts.privileged ? 'rw' : 'ro';
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      // gid 5 is the "tty" group in every mainstream distribution; newinstance keeps the pty
      // namespace apart from the host's.
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', sysMode] },
    {
      destination: '/sys/fs/cgroup',
      type: 'cgroup',
      source: 'cgroup',
      options: ['nosuid', 'noexec', 'nodev', 'relatime', sysMode],
    },
  ];
}

/** What the CRI's bind mounts add to the spec: the mounts, and the rootfs propagation they need. */
export interface CriMountsResult {
  mounts: OciMount[];
  /** 'rslave' or 'rshared' when a mount asks for propagation; absent keeps runc's rprivate. */
  rootfsPropagation?: string;
}

/**
 * The CRI mounts as OCI bind mounts, parents before children. Like containerd, a host path that does
 * not exist is created as a directory (0755), because the kubelet relies on it for some hostPath
 * types; symlinks in the host path are resolved first so the check below sees the real mount.
 * Propagation other than private needs the host path's mount to propagate (shared, or slave for
 * HOST_TO_CONTAINER): otherwise the container would silently see no new mounts, so it is refused.
 */
export async function criMounts(mounts: readonly Mount__Output[]): Promise<CriMountsResult> {
  // Every mount is checked before any host directory is made, so a bad request creates nothing.
  const checked = sortByDepth(mounts).map((m) => ({ m, what: describe(m), destination: checkMount(m) }));
  let rootfsPropagation: string | undefined;
  let mountInfo: Map<string, string> | undefined;
  const out: OciMount[] = [];
  for (const { m, what, destination } of checked) {
    const source = await hostSource(m.host_path, what);

    const options = ['rbind'];
    switch (m.propagation) {
      case 'PROPAGATION_BIDIRECTIONAL': {
        mountInfo ??= await mountPoints();
        const at = mountOf(source, mountInfo);
        if (!at?.shared) {
          throw invalidArgument(
            `${what}: PROPAGATION_BIDIRECTIONAL needs a shared host mount, but ${source} is on ${at?.mountPoint ?? '?'} ` +
              `which is not shared (make it shared, e.g. mount --make-rshared ${at?.mountPoint ?? '/'})`,
          );
        }
        options.push('rshared');
        rootfsPropagation = 'rshared';
        break;
      }
      case 'PROPAGATION_HOST_TO_CONTAINER': {
        mountInfo ??= await mountPoints();
        const at = mountOf(source, mountInfo);
        if (!at?.shared && !at?.slave) {
          throw invalidArgument(
            `${what}: PROPAGATION_HOST_TO_CONTAINER needs a shared or slave host mount, but ${source} is on ` +
              `${at?.mountPoint ?? '?'} which is private (e.g. mount --make-rshared ${at?.mountPoint ?? '/'})`,
          );
        }
        options.push('rslave');
        if (rootfsPropagation !== 'rshared') rootfsPropagation = 'rslave';
        break;
      }
      default:
        options.push('rprivate');
    }
    options.push(m.readonly ? 'ro' : 'rw');
    // runc 1.1+ makes the mount read-only all the way down (mount_setattr) when asked with "rro".
    if (m.recursive_read_only) options.push('rro');
    out.push({ destination, type: 'bind', source, options });
  }
  return rootfsPropagation ? { mounts: out, rootfsPropagation } : { mounts: out };
}

function describe(m: Mount__Output): string {
  return `mount ${JSON.stringify(m.host_path)} → ${JSON.stringify(m.container_path)}`;
}

/** Refuses what no runtime could do with a CRI mount; returns its cleaned container path. */
function checkMount(m: Mount__Output): string {
  const what = describe(m);
  if (!m.container_path || !isAbsolute(m.container_path)) {
    throw invalidArgument(`${what}: container_path must be an absolute path`);
  }
  const destination = cleanPath(m.container_path);
  if (destination === '/') throw invalidArgument(`${what}: cannot mount over the container's root`);
  if (m.image) throw new BerthError('unimplemented', `${what}: image volume mounts are not supported by berth yet`);
  if (m.uidMappings.length > 0 || m.gidMappings.length > 0) {
    throw new BerthError('unimplemented', `${what}: ID-mapped mounts need user namespaces, which berth does not support yet`);
  }
  if (!m.host_path || !isAbsolute(m.host_path)) throw invalidArgument(`${what}: host_path must be an absolute path`);
  if (m.recursive_read_only && !m.readonly) throw invalidArgument(`${what}: recursive_read_only needs readonly too`);
  if (m.recursive_read_only && m.propagation !== 'PROPAGATION_PRIVATE') {
    throw invalidArgument(`${what}: recursive_read_only needs PROPAGATION_PRIVATE`);
  }
  return destination;
}

/** An absolute path without "//", "." or a trailing slash. */
function cleanPath(p: string): string {
  const n = posix.normalize(p);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

/** Mounts with fewer path components first, so a parent volume never hides its child (stable). */
function sortByDepth(mounts: readonly Mount__Output[]): Mount__Output[] {
  const depth = (p: string): number => cleanPath(p).split('/').filter(Boolean).length;
  return [...mounts].sort((a, b) => depth(a.container_path) - depth(b.container_path));
}

/** The host path with its symlinks resolved, created as a directory when it does not exist. */
async function hostSource(hostPath: string, what: string): Promise<string> {
  try {
    return await realpath(hostPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw invalidArgument(`${what}: cannot resolve host_path: ${errorMessage(err)}`);
    }
  }
  try {
    await mkdir(hostPath, { recursive: true, mode: 0o755 });
    return await realpath(hostPath);
  } catch (err) {
    throw invalidArgument(`${what}: host_path does not exist and could not be created: ${errorMessage(err)}`);
  }
}

/** One mount point, as far as propagation checks need it. */
interface MountInfo {
  mountPoint: string;
  shared: boolean;
  slave: boolean;
}

/** The mount a path lives on: the deepest mount point containing it (of stacked mounts, the topmost). */
function mountOf(path: string, points: ReadonlyMap<string, string>): MountInfo | undefined {
  let best: string | undefined;
  for (const point of points.keys()) {
    const contains = point === '/' || path === point || path.startsWith(`${point}/`);
    if (contains && (best === undefined || point.length >= best.length)) best = point;
  }
  if (best === undefined) return undefined;
  const optional = (points.get(best) ?? '').split(' ');
  return { mountPoint: best, shared: optional.some((o) => o.startsWith('shared:')), slave: optional.some((o) => o.startsWith('master:')) };
}
