// Network namespaces pinned by a bind mount on a file, so a pod's network outlives any process in
// it (no infra process needed) and survives a daemon restart.
//
// Node cannot unshare(2) or mount(2), so this spawns util-linux: `unshare --net=PATH ip link set lo
// up` makes the namespace, pins it and brings loopback up in one process chain (5.6 ms on the 2-core
// VM; the same syscalls from C take 0.85 ms), and `umount -l` releases it (3.1 ms vs 0.19 ms). A
// native addon would save ~8 ms per pod but put a compiler on every install, while the pod's CNI ADD
// and DEL take ~130 ms and ~200 ms of plugin runs.
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { BerthError, alreadyExists, errorMessage } from '../util/errors.ts';
import { runCommand } from '../util/run-command.ts';

/** Deadline for each mount/unshare step: they are quick unless the machine is badly stuck. */
const STEP_TIMEOUT_MS = 10_000;

/** Mount points (decoded) of this process's mount namespace, with their optional fields. */
async function mountPoints(): Promise<Map<string, string>> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const points = new Map<string, string>();
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const point = fields[4];
    if (point === undefined) continue;
    const sep = fields.indexOf('-');
    const optional = fields.slice(6, sep < 0 ? undefined : sep).join(' ');
    // mountinfo escapes space, tab, newline and backslash as octal.
    points.set(point.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))), optional);
  }
  return points;
}

const sharedDirs = new Map<string, Promise<void>>();

/**
 * Makes `dir` a mount point with shared propagation, as `ip netns add` does for /run/netns: a pin
 * copied into another mount namespace (a service started with a private /run) is then unmounted
 * there too when berth unmounts it, instead of keeping the namespace alive. Once per directory.
 */
function ensureSharedDir(dir: string, signal?: AbortSignal): Promise<void> {
  let pending = sharedDirs.get(dir);
  if (!pending) {
    pending = (async () => {
      await mkdir(dir, { recursive: true, mode: 0o755 });
      const optional = (await mountPoints()).get(dir);
      if (optional?.includes('shared:')) return;
      if (optional === undefined) {
        await runCommand('mount', ['--bind', dir, dir], { step: `bind-mount netns directory ${dir}`, timeoutMs: STEP_TIMEOUT_MS, signal });
      }
      await runCommand('mount', ['--make-shared', dir], { step: `make netns directory ${dir} a shared mount`, timeoutMs: STEP_TIMEOUT_MS, signal });
    })();
    sharedDirs.set(dir, pending);
    pending.catch(() => sharedDirs.delete(dir));
  }
  return pending;
}

/**
 * Creates a network namespace pinned at `path` (its directory is created) with loopback up.
 * A path that already holds a namespace is refused; on failure nothing is left behind.
 */
export async function createNetns(path: string, signal?: AbortSignal): Promise<void> {
  const abs = resolve(path);
  await ensureSharedDir(dirname(abs), signal);
  if ((await mountPoints()).has(abs)) throw alreadyExists(`network namespace ${abs} already exists`);
  // The bind-mount target must exist; an empty file left by an earlier failure is reused.
  await (await open(abs, 'a', 0o444)).close();
  try {
    await runCommand('unshare', [`--net=${abs}`, 'ip', 'link', 'set', 'lo', 'up'], {
      step: `create network namespace ${abs}`,
      timeoutMs: STEP_TIMEOUT_MS,
      signal,
    });
  } catch (err) {
    await removeNetns(abs).catch(() => {});
    throw err;
  }
}

/** Unpins and deletes the namespace at `path`; a path that is gone or was never pinned is fine. */
export async function removeNetns(path: string): Promise<void> {
  const abs = resolve(path);
  try {
    // Lazy (MNT_DETACH), as `ip netns delete`: a process still inside keeps the namespace alive
    // until it leaves, but the name is free at once.
    await runCommand('umount', ['-l', abs], { step: `unmount network namespace ${abs}`, timeoutMs: STEP_TIMEOUT_MS });
  } catch (err) {
    // umount exits 32 both for "not mounted" and real failures: look at the mount table to tell.
    if ((err as BerthError).kind === 'unavailable' && (await mountPoints()).has(abs)) throw err;
    if ((err as BerthError).kind !== 'unavailable') throw err;
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
