// conmon: the per-container monitor. berth starts one per container; it runs `<runtime> create`,
// holds the container's stdio, writes its CRI-format log, writes the exit code to
// `<exitDir>/<id>` when the container ends, and outlives berthd (it double-forks into its own
// session), which is what lets containers survive a daemon restart.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { BerthError } from '../util/errors.ts';
import type { OciRuntime } from './runtime.ts';

export interface ConmonCreate {
  conmonPath: string;
  runtime: OciRuntime;
  id: string;
  name: string;
  bundle: string;
  logPath: string;
  exitDir: string;
  socketDir: string;
  /** Where conmon writes its own PID and the container's. */
  conmonPidFile: string;
  containerPidFile: string;
  terminal: boolean;
  stdin: boolean;
  stdinOnce: boolean;
  systemdCgroup: boolean;
  timeoutMs: number;
  signal?: AbortSignal;
}

/**
 * Starts conmon, which creates the container; resolves with the container's PID and conmon's once
 * the container exists.
 */
export async function conmonCreate(o: ConmonCreate): Promise<{ pid: number; conmonPid: number }> {
  o.signal?.throwIfAborted();
  const args = [
    '--api-version', '1',
    '--cid', o.id,
    '--cuuid', o.id,
    '--name', o.name,
    '--runtime', o.runtime.path,
    '--bundle', o.bundle,
    '--container-pidfile', o.containerPidFile,
    '--conmon-pidfile', o.conmonPidFile,
    '--log-path', `k8s-file:${o.logPath}`,
    '--exit-dir', o.exitDir,
    '--socket-dir-path', o.socketDir,
    '--log-level', 'error',
    ...o.runtime.globalArgs().flatMap((a) => ['--runtime-arg', a]),
    ...(o.systemdCgroup ? ['--systemd-cgroup'] : []),
    ...(o.terminal ? ['--terminal'] : []),
    ...(o.stdin ? ['--stdin'] : []),
    ...(o.stdin && !o.stdinOnce ? ['--leave-stdin-open'] : []),
  ];
  // fd 3 is the sync pipe: conmon writes {"data": <pid>} when the container exists, or
  // {"data": -1, "message": "<the runtime's stderr>"} when create failed.
  const child = spawn(o.conmonPath, args, {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
    env: { ...process.env, _OCI_SYNCPIPE: '3' },
    cwd: o.bundle,
  });
  const sync = child.stdio[3] as Readable;
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  // The first conmon process forks the monitor, writes its PID file and exits; wait for that too.
  const parentExited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let text = '';
  const step = `${o.runtime.handler} create ${o.id} (under conmon)`;
  const reply = new Promise<{ data: number; message?: string }>((resolve, reject) => {
    sync.on('data', (c: Buffer) => {
      text += c.toString();
      const nl = text.indexOf('\n');
      if (nl < 0) return;
      try {
        resolve(JSON.parse(text.slice(0, nl)) as { data: number; message?: string });
      } catch {
        reject(new BerthError('internal', `${step}: conmon sent an unreadable reply: ${text.slice(0, nl)}`));
      }
    });
    // EOF without a line: conmon died before reporting (bad flags, missing runtime).
    sync.once('end', () => reject(new BerthError('internal', `${step} failed: conmon exited without reporting: ${stderr.trim() || 'no message'}`)));
    sync.once('error', reject);
  });
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new BerthError('unavailable', `${step} did not finish within ${o.timeoutMs} ms; the runtime may be hung`)), o.timeoutMs);
  const onAbort = (): void => ac.abort(o.signal?.reason);
  o.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const aborted = once(ac.signal, 'abort').then(() => {
      throw ac.signal.reason;
    });
    const res = await Promise.race([reply, aborted]);
    if (typeof res.data !== 'number' || res.data <= 0) {
      throw new BerthError('failed-precondition', `${step} failed: ${(res.message ?? stderr).trim() || 'no message from the runtime'}`);
    }
    await Promise.race([parentExited, aborted]);
    const conmonPid = Number((await readFile(o.conmonPidFile, 'utf8')).trim());
    if (!(conmonPid > 0)) throw new BerthError('internal', `${step}: conmon wrote no PID to ${o.conmonPidFile}`);
    return { pid: res.data, conmonPid };
  } finally {
    clearTimeout(timer);
    o.signal?.removeEventListener('abort', onAbort);
    // conmon keeps the write end open while it lives; berth has what it needs.
    sync.destroy();
    child.stderr?.destroy();
  }
}
