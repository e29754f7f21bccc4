// mount(8) and umount(8) for the runtime's own mounts (overlay rootfs, pod /dev/shm), and a reader
// of /proc/self/mountinfo to find what is mounted under a directory.
// Node has no mount syscall; one short-lived tool per mount costs ~2 ms, which the pod start budget
// affords (see docs/architecture.md).
import { readFile } from 'node:fs/promises';
import { runCommand } from './run-command.ts';

const MOUNT_TIMEOUT_MS = 10_000;

export async function mount(type: string, source: string, target: string, options: string[], signal?: AbortSignal): Promise<void> {
  const args = ['-t', type, ...(options.length > 0 ? ['-o', options.join(',')] : []), source, target];
  await runCommand('mount', args, { step: `mount ${type} at ${target}`, timeoutMs: MOUNT_TIMEOUT_MS, signal });
}

/**
 * Unmounts each target that something is mounted at, all with one umount; a path that is not a
 * mount point is fine.
 */
export async function unmount(targets: string | ReadonlyArray<string | undefined>, signal?: AbortSignal): Promise<void> {
  const points = await mountPoints();
  const mounted = (typeof targets === 'string' ? [targets] : targets).filter((t): t is string => t !== undefined && points.has(t));
  if (mounted.length === 0) return;
  // Lazy: a process that still has its cwd inside (a dying exec) must not make removal fail.
  await runCommand('umount', ['-l', ...mounted], { step: `unmount ${mounted.join(' ')}`, timeoutMs: MOUNT_TIMEOUT_MS, signal });
}

/**
 * Every mount point of this mount namespace, decoded from /proc/self/mountinfo (which escapes
 * space, tab, newline and backslash as octal), with its optional fields (`shared:N`, `master:N`).
 */
export async function mountPoints(): Promise<Map<string, string>> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const points = new Map<string, string>();
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const point = fields[4];
    if (point === undefined) continue;
    const sep = fields.indexOf('-');
    const optional = fields.slice(6, sep < 0 ? undefined : sep).join(' ');
    points.set(point.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))), optional);
  }
  return points;
}

/** Mount points at or below `dir`, deepest first (the order to unmount them in). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return [...(await mountPoints()).keys()].filter((p) => p === dir || p.startsWith(prefix)).sort((a, b) => b.length - a.length);
}
