// Device nodes a container gets: the standard set every container has, the CRI's extra host
// devices (with their device-cgroup rules), and all host devices for privileged containers.
import { lstat, readdir, stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import type { Device__Output } from '../cri/gen/runtime/v1/Device.ts';
import { errorMessage, invalidArgument } from '../util/errors.ts';
import type { OciDevice, OciDeviceCgroup } from './types.ts';

const std = (path: string, major: number, minor: number): OciDevice => ({ type: 'c', path, major, minor, fileMode: 0o666, uid: 0, gid: 0 });

/** The character devices every container has (runc would make these too; listed so crun does the same). */
export const DEFAULT_DEVICES: readonly OciDevice[] = [
  std('/dev/null', 1, 3),
  std('/dev/zero', 1, 5),
  std('/dev/full', 1, 7),
  std('/dev/random', 1, 8),
  std('/dev/urandom', 1, 9),
  std('/dev/tty', 5, 0),
];

const allowC = (major: number | undefined, minor: number | undefined, access = 'rwm'): OciDeviceCgroup => ({
  allow: true,
  type: 'c',
  ...(major === undefined ? {} : { major }),
  ...(minor === undefined ? {} : { minor }),
  access,
});

/**
 * The device cgroup of an unprivileged container: nothing but the standard devices, the console,
 * ptmx and the pty slaves (major 136). Creating any node (mknod, "m") stays allowed as Docker and
 * runc allow it, since opening a node still needs its own rule.
 */
export const DEFAULT_DEVICE_RULES: readonly OciDeviceCgroup[] = [
  { allow: false, access: 'rwm' },
  allowC(undefined, undefined, 'm'),
  { allow: true, type: 'b', access: 'm' },
  ...DEFAULT_DEVICES.map((d) => allowC(d.major, d.minor)),
  allowC(5, 1), // /dev/console
  allowC(5, 2), // /dev/ptmx
  allowC(136, undefined), // /dev/pts/*
];

/** A privileged container may use every device. */
export const PRIVILEGED_DEVICE_RULES: readonly OciDeviceCgroup[] = [{ allow: true, access: 'rwm' }];

/** Linux's dev_t split into major and minor (the glibc encoding: 12+32 bits major, 20 bits minor). */
function splitDev(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & 0xfff00n);
  return { major: Number(major), minor: Number(minor) };
}

/**
 * A CRI device: the host node's type, numbers, mode and owner, at container_path, and the cgroup
 * rule allowing `permissions` (any of r, w, m; empty means all three, as the kubelet always sends).
 */
export async function deviceFor(dev: Device__Output): Promise<{ device: OciDevice; rule: OciDeviceCgroup }> {
  const what = `device ${JSON.stringify(dev.host_path)} → ${JSON.stringify(dev.container_path)}`;
  if (!dev.host_path || !isAbsolute(dev.host_path)) throw invalidArgument(`${what}: host_path must be an absolute path`);
  const containerPath = dev.container_path || dev.host_path;
  if (!isAbsolute(containerPath)) throw invalidArgument(`${what}: container_path must be an absolute path`);
  const access = dev.permissions || 'rwm';
  if (!/^[rwm]+$/.test(access) || new Set(access).size !== access.length) {
    throw invalidArgument(`${what}: permissions ${JSON.stringify(dev.permissions)} must be letters from "rwm", each at most once`);
  }
  let st;
  try {
    st = await stat(dev.host_path, { bigint: true });
  } catch (err) {
    throw invalidArgument(`${what}: the host has no such device (${errorMessage(err)})`);
  }
  const type = st.isCharacterDevice() ? 'c' : st.isBlockDevice() ? 'b' : undefined;
  if (!type) throw invalidArgument(`${what}: ${dev.host_path} is not a character or block device`);
  const { major, minor } = splitDev(st.rdev);
  return {
    device: { type, path: containerPath, major, minor, fileMode: Number(st.mode & 0o777n), uid: Number(st.uid), gid: Number(st.gid) },
    rule: { allow: true, type, major, minor, access },
  };
}

/** Directories under /dev that hold no devices of the host's to pass on (or are per-container). */
const SKIP_DIRS = new Set(['pts', 'shm', 'fd', 'mqueue', '.lxc', '.lxd-mounts', '.udev', '.mount']);
/** Nodes the runtime sets up itself for each container. */
const SKIP_NODES = new Set(['/dev/console', '/dev/ptmx']);

/** Every device node under the host's /dev, for a privileged container (symlinks are not followed). */
export async function privilegedDevices(): Promise<OciDevice[]> {
  const out: OciDevice[] = [];
  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return; // a directory that vanished or is unreadable holds nothing to pass on
    }
    for (const e of entries) {
      const path = join(dir, e.name);
      if (e.isDirectory()) {
        if (!SKIP_DIRS.has(e.name)) await walk(path);
        continue;
      }
      if (!e.isCharacterDevice() && !e.isBlockDevice()) continue;
      if (SKIP_NODES.has(path)) continue;
      let st;
      try {
        st = await lstat(path, { bigint: true });
      } catch {
        continue; // removed while we looked (hotplug)
      }
      const { major, minor } = splitDev(st.rdev);
      out.push({
        type: st.isCharacterDevice() ? 'c' : 'b',
        path,
        major,
        minor,
        fileMode: Number(st.mode & 0o777n),
        uid: Number(st.uid),
        gid: Number(st.gid),
      });
    }
  };
  await walk('/dev');
  return out;
}
