// Network namespaces pinned by a bind mount on a file, so a pod's network outlives any process in
// it (no infra process needed) and survives a daemon restart.
//
// Node cannot unshare(2) or mount(2), so this spawns util-linux: `unshare --net=PATH ip link set lo
// up` makes the namespace, pins it and brings loopback up in one process chain (5.6 ms on the 2-core
// VM; the same syscalls from C take 0.85 ms), and `umount -l` releases it (3.1 ms vs 0.19 ms). A
// native addon would save ~8 ms per pod but put a compiler on every install, while the pod's CNI ADD
// and DEL take ~60 ms and ~90 ms of plugin runs (bridge with ipMasq + portmap, idle machine).
import { access, mkdir, open, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { BerthError, alreadyExists, errorMessage } from '../util/errors.ts';
import { runCommand } from '../util/run-command.ts';
import { mountPoints } from '../util/mount.ts';

/** Deadline for each mount/unshare step: they are quick unless the machine is badly stuck. */
const STEP_TIMEOUT_MS = 10_000;

/**
 * Left in a pin directory that berth made a mount point of itself, so that removeNetns (in this
 * process or after a restart) knows the directory mount is berth's to take down again.
 */
const MARKER = '.berth-netns-dir';

const hasMountsBelow = (points: Map<string, string>, dir: string): boolean => [...points.keys()].some((p) => p.startsWith(`${dir}/`));

/** One create/remove per pin directory at a time: removal may take the directory mount down. */
const dirLocks = new Map<string, Promise<unknown>>();

async function underDirLock<T>(dir: string, job: () => Promise<T>): Promise<T> {
  const run = (dirLocks.get(dir) ?? Promise.resolve()).catch(() => {}).then(job);
  const tail = run.catch(() => {});
  dirLocks.set(dir, tail);
  try {
    return await run;
  } finally {
    if (dirLocks.get(dir) === tail) dirLocks.delete(dir);
  }
}

const step = (what: string, signal?: AbortSignal) => ({ step: what, timeoutMs: STEP_TIMEOUT_MS, signal });

/**
 * Gives the pin directory shared propagation, as `ip netns add` does for /run/netns: a pin copied
 * into a mount namespace made later (a service with a private /run) is then unmounted there too
 * when berth unmounts it, instead of keeping the namespace alive. A directory that is not a mount
 * point becomes a bind mount of itself, but only while nothing is mounted below it: a plain bind
 * would hide those mounts (a pod's /dev/shm or IPC pin beside its netns).
 */
async function shareDir(dir: string, points: Map<string, string>, signal?: AbortSignal): Promise<void> {
  const optional = points.get(dir);
  if (optional?.includes('shared:')) return;
  if (optional === undefined) {
    if (hasMountsBelow(points, dir)) return;
    await writeFile(join(dir, MARKER), '');
    await runCommand('mount', ['--bind', dir, dir], step(`bind-mount netns directory ${dir}`, signal));
  }
  await runCommand('mount', ['--make-shared', dir], step(`make netns directory ${dir} a shared mount`, signal));
}

/**
 * Creates a network namespace pinned at `path` (its directory is created) with loopback up.
 * A path that already holds a namespace is refused; on failure nothing is left behind.
 */
export async function createNetns(path: string, signal?: AbortSignal): Promise<void> {
  const abs = resolve(path);
  const dir = dirname(abs);
  await underDirLock(dir, async () => {
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const points = await mountPoints();
    if (points.has(abs)) throw alreadyExists(`network namespace ${abs} already exists`);
    await shareDir(dir, points, signal);
    // The bind-mount target must exist; an empty file left by an earlier failure is reused.
    await (await open(abs, 'a', 0o444)).close();
    try {
      await runCommand('unshare', [`--net=${abs}`, 'ip', 'link', 'set', 'lo', 'up'], step(`create network namespace ${abs}`, signal));
    } catch (err) {
      await unpin(abs).catch(() => {});
      throw err;
    }
  });
}

/**
 * Unpins and deletes the namespace at `path`; a path that is gone or was never pinned is fine.
 * When it was the last pin in a directory berth made a mount point, that mount goes too, so the
 * caller can remove the directory.
 */
export async function removeNetns(path: string): Promise<void> {
  const abs = resolve(path);
  const dir = dirname(abs);
  // Unpinning one file does not disturb a create beside it, so only the check for the last pin
  // (which may take the directory mount down) waits for the lock: a pod's start does not queue
  // behind another pod's umount.
  await unpin(abs);
  await underDirLock(dir, async () => {
    const marker = join(dir, MARKER);
    if (!(await access(marker).then(() => true, () => false))) return;
    const points = await mountPoints();
    if (hasMountsBelow(points, dir)) return;
    if (points.has(dir)) await runCommand('umount', ['-l', dir], step(`unmount netns directory ${dir}`));
    await rm(marker, { force: true });
  });
}

async function unpin(abs: string): Promise<void> {
  try {
    // Lazy (MNT_DETACH), as `ip netns delete`: a process still inside keeps the namespace alive
    // until it leaves, but the name is free at once.
    await runCommand('umount', ['-l', abs], step(`unmount network namespace ${abs}`));
  } catch (err) {
    // umount exits 32 both for "not mounted" and real failures: look at the mount table to tell.
    if ((err as BerthError).kind !== 'unavailable' || (await mountPoints()).has(abs)) throw err;
  }
  try {
    await rm(abs, { force: true });
  } catch (err) {
    throw new BerthError('unavailable', `remove network namespace file ${abs}: ${errorMessage(err)}`, { cause: err });
  }
}

/** True when `path` is a pinned namespace (a mount point) in this mount namespace. */
export async function netnsExists(path: string): Promise<boolean> {
  return (await mountPoints()).has(resolve(path));
}
