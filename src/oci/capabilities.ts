// Linux capabilities for a container's process: the default set runtimes give, the CRI's add/drop
// (with "ALL"), ambient capabilities, and for privileged containers everything the host lets berthd give.
import { readFileSync } from 'node:fs';
import { failedPrecondition, invalidArgument } from '../util/errors.ts';
import type { OciCapabilities } from './types.ts';

/** Every capability by its number (capability.h): index = number. */
const ALL_KNOWN: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL',
  'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT',
  'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME', 'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE',
  'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG',
  'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];

/** The set a container gets unless the CRI adds or drops: the one Docker, containerd and CRI-O give. */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

let hostCaps: readonly string[] | undefined;

/**
 * Capabilities a container can be given here: those this kernel knows (0..cap_last_cap) that are
 * also in berthd's own bounding set, since runc cannot raise a capability its parent lacks (this VM
 * withholds CAP_SYS_RESOURCE, for one). Read once: procfs reads cannot block.
 */
function hostCapabilities(): readonly string[] {
  if (!hostCaps) {
    let last = ALL_KNOWN.length - 1;
    let bounding = (1n << BigInt(ALL_KNOWN.length)) - 1n;
    try {
      const n = Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim());
      if (Number.isInteger(n) && n >= 0) last = Math.min(n, ALL_KNOWN.length - 1);
      const bnd = /^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
      if (bnd) bounding = BigInt(`0x${bnd}`);
    } catch {
      // No procfs (unusual): assume every capability berth knows is available.
    }
    hostCaps = ALL_KNOWN.slice(0, last + 1).filter((_, i) => (bounding >> BigInt(i)) & 1n);
  }
  return hostCaps;
}

/** "net_admin", "NET_ADMIN" and "CAP_NET_ADMIN" all name CAP_NET_ADMIN; "ALL" stays as it is. */
function normalise(name: string, field: string): string {
  const upper = name.trim().toUpperCase();
  if (upper === 'ALL') return upper;
  const full = upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
  if (!ALL_KNOWN.includes(full)) {
    throw invalidArgument(`${field}: unknown capability ${JSON.stringify(name)} (expected a name like NET_ADMIN or CAP_NET_ADMIN, or ALL)`);
  }
  return full;
}

/**
 * The process capabilities. "ALL" in add starts from every capability, "ALL" in drop from none; then
 * the named drops apply, then the named adds, so add [ALL] + drop [CHOWN] is everything but CHOWN
 * and drop [ALL] + add [NET_ADMIN] is NET_ADMIN alone (the order containerd uses). Inheritable stays
 * empty so file capabilities cannot lift an exec'd program above the set (CVE-2022-24769). Ambient
 * capabilities are also put in every other set, since the kernel only raises an ambient capability
 * that is permitted and inheritable. "Every capability" is every one berthd holds itself; naming one
 * it does not hold is refused (failed-precondition).
 */
export function capabilities(req: {
  add?: readonly string[];
  drop?: readonly string[];
  privileged: boolean;
  addAmbient?: readonly string[];
}): OciCapabilities {
  const add = (req.add ?? []).map((c) => normalise(c, 'add_capabilities'));
  const drop = (req.drop ?? []).map((c) => normalise(c, 'drop_capabilities'));
  const ambient = (req.addAmbient ?? []).map((c) => normalise(c, 'add_ambient_capabilities'));
  if (ambient.includes('ALL')) throw invalidArgument('add_ambient_capabilities: ALL is not allowed; name each capability');

  let set: Set<string>;
  if (req.privileged) {
    set = new Set(hostCapabilities());
  } else {
    set = new Set(DEFAULT_CAPABILITIES.filter((c) => hostCapabilities().includes(c)));
    if (add.includes('ALL')) set = new Set(hostCapabilities());
    if (drop.includes('ALL')) set.clear();
    for (const c of drop) if (c !== 'ALL') set.delete(c);
    for (const c of add) if (c !== 'ALL') set.add(c);
  }
  for (const c of ambient) set.add(c);
  // Asked for by name but not ours to give: runc would fail with a bare EPERM, so say which.
  const unavailable = [...set].filter((c) => !hostCapabilities().includes(c));
  if (unavailable.length > 0) {
    throw failedPrecondition(
      `${unavailable.join(', ')} cannot be given to a container on this node: berthd itself does not hold ${unavailable.length > 1 ? 'them' : 'it'} (see CapBnd in /proc/<berthd pid>/status)`,
    );
  }

  const list = [...set];
  const caps: OciCapabilities = { bounding: list, effective: [...list], permitted: [...list] };
  if (ambient.length > 0) {
    const unique = [...new Set(ambient)];
    caps.inheritable = unique;
    caps.ambient = [...unique];
  }
  return caps;
}
