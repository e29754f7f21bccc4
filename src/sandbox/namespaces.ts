// A pod's namespaces without an infra container: IPC and UTS are pinned by bind-mounting their nsfs
// files (unshare(1) does the unshare + bind in one ~3 ms call), so no process has to stay alive for
// them. A PID namespace dies with its init, so a pod that shares one (pid: POD) gets a holder: a
// pause process (catatonit -P) as PID 1 of a fresh PID namespace, detached from berthd so it
// outlives a daemon restart, and reaping the pod's orphans as an init should.
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand } from '../util/run-command.ts';
import { BerthError } from '../util/errors.ts';
import { unmount } from '../util/mount.ts';

/** Creates new IPC and/or UTS namespaces pinned at `<dir>/ipc` and `<dir>/uts`. */
export async function pinNamespaces(dir: string, which: { ipc: boolean; uts: boolean }, signal?: AbortSignal): Promise<{ ipcPath?: string; utsPath?: string }> {
  const out: { ipcPath?: string; utsPath?: string } = {};
  const args: string[] = [];
  if (which.ipc) out.ipcPath = join(dir, 'ipc');
  if (which.uts) out.utsPath = join(dir, 'uts');
  for (const [flag, path] of [['--ipc', out.ipcPath], ['--uts', out.utsPath]] as const) {
    if (!path) continue;
    await writeFile(path, '', { mode: 0o444 });
    args.push(`${flag}=${path}`);
  }
  if (args.length > 0) await runCommand('unshare', [...args, 'true'], { step: 'pin the pod namespaces (unshare)', timeoutMs: 10_000, signal });
  return out;
}

export async function unpinNamespaces(paths: Array<string | undefined>, signal?: AbortSignal): Promise<void> {
  for (const p of paths) if (p) await unmount(p, signal);
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
