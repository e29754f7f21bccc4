// A pod's namespaces without an infra container: IPC and UTS are pinned by bind-mounting their nsfs
// files (unshare(1) does the unshare + bind in one ~3 ms call), so no process has to stay alive for
// them. A PID namespace dies with its init, so a pod that shares one (pid: POD) gets a holder: a
// pause process (catatonit -P) as PID 1 of a fresh PID namespace, detached from berthd so it
// outlives a daemon restart, and reaping the pod's orphans as an init should.
import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand } from '../util/run-command.ts';
import { BerthError } from '../util/errors.ts';

/** Where a pod's IPC and UTS namespaces are pinned: `<dir>/ipc` and `<dir>/uts`, when not the host's. */
export function pinPaths(dir: string, which: { ipc: boolean; uts: boolean }): { ipcPath?: string; utsPath?: string } {
  return { ...(which.ipc ? { ipcPath: join(dir, 'ipc') } : {}), ...(which.uts ? { utsPath: join(dir, 'uts') } : {}) };
}

/**
 * Creates new IPC and/or UTS namespaces pinned at `pins`, then runs `then` (default `true`) in
 * them. unshare stays in the host's mount namespace, so a mount `then` makes (the pod's /dev/shm)
 * is a host mount: one process chain instead of two on the pod's start path.
 */
async function pinNamespaces(pins: { ipcPath?: string; utsPath?: string }, signal?: AbortSignal, then?: readonly string[]): Promise<void> {
  const args: string[] = [];
  for (const [flag, path] of [['--ipc', pins.ipcPath], ['--uts', pins.utsPath]] as const) {
    if (!path) continue;
    await writeFile(path, '', { mode: 0o444 });
    args.push(`${flag}=${path}`);
  }
  if (args.length === 0 && !then) return;
  const step = then ? `pin the pod namespaces and run ${then.join(' ')} (unshare)` : 'pin the pod namespaces (unshare)';
  await runCommand('unshare', [...args, ...(then ?? ['true'])], { step, timeoutMs: 10_000, signal });
}

/**
 * Makes a pod's own IPC and/or UTS namespaces (those in `pins`, from pinPaths) and, with an IPC
 * namespace of its own, its /dev/shm: a tmpfs at `<dir>/shm` that its containers share.
 */
export async function pinPodNamespaces(dir: string, pins: { ipcPath?: string; utsPath?: string }, signal?: AbortSignal): Promise<void> {
  const shm = join(dir, 'shm');
  if (pins.ipcPath) await mkdir(shm, { mode: 0o1777 });
  const mountShm = ['mount', '-t', 'tmpfs', '-o', 'nosuid,nodev,noexec,mode=1777,size=65536k', 'shm', shm];
  await pinNamespaces(pins, signal, pins.ipcPath ? mountShm : undefined);
}

/** Field 22 of /proc/<pid>/stat: tells a live process from a later one that reused its PID. */
export async function processStartTime(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; count from the closing parenthesis.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(rest[19]);
  } catch {
    return undefined;
  }
}

export async function isAlive(proc: { pid: number; startTime: number }): Promise<boolean> {
  return (await processStartTime(proc.pid)) === proc.startTime;
}

/** Starts the PID namespace holder; resolves with PID 1 of the new namespace (its host PID). */
export async function startPidHolder(infraPath: string, signal?: AbortSignal): Promise<{ pid: number; startTime: number }> {
  const child = spawn('unshare', ['--pid', '--fork', '--kill-child=SIGKILL', infraPath, '-P'], { detached: true, stdio: 'ignore' });
  const failed = new Promise<never>((_, reject) => {
    child.once('error', (err) => reject(new BerthError('failed-precondition', `start the pod's PID namespace holder: ${err.message}`)));
    child.once('exit', (code) => reject(new BerthError('failed-precondition', `the pod's PID namespace holder (unshare --pid ${infraPath} -P) exited at once (code ${code}); is ${infraPath} installed?`)));
  });
  failed.catch(() => undefined);
  child.unref();
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    signal?.throwIfAborted();
    const pid = child.pid ? await firstChild(child.pid) : undefined;
    if (pid) {
      const startTime = await processStartTime(pid);
      if (startTime !== undefined) return { pid, startTime };
    }
    await Promise.race([sleep(2), failed]);
  }
  child.kill('SIGKILL');
  throw new BerthError('unavailable', 'the pod PID namespace holder did not start within 10 s');
}

async function firstChild(pid: number): Promise<number | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8');
    const first = text.trim().split(' ')[0];
    return first ? Number(first) : undefined;
  } catch {
    return undefined;
  }
}

/** Kills the holder (and with it every process left in the pod's PID namespace). */
export async function stopPidHolder(holder: { pid: number; startTime: number }): Promise<void> {
  if (!(await isAlive(holder))) return;
  try {
    process.kill(holder.pid, 'SIGKILL');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}
