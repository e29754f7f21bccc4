// Starts a real berthd (bin/berthd.js, the package entry) on a temp root, state dir and socket, and
// gives tests a CRI client to it. Several can run side by side.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, rm, writeFile, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { CriClient } from '../../src/client/cri-client.ts';
import { mountsUnder, unmount } from '../../src/util/mount.ts';

export const BERTHD = fileURLToPath(new URL('../../bin/berthd.js', import.meta.url));

export interface DaemonOptions {
  /** TOML written to the daemon's config file. */
  config?: string;
  /** Re-use a root (restart tests); a fresh temp root otherwise. */
  root?: string;
  /** Re-use a state dir (restart tests, with `root`); a fresh one otherwise. */
  state?: string;
  /** The fresh state dir's name in the daemon's temp dir (`state`): a long one tests paths near the socket-path limit. */
  stateName?: string;
  extraArgs?: string[];
  /** Another node binary and berthd script (a bundle from the berth image) instead of bin/berthd.js. */
  entry?: { node: string; script: string };
  /** `--log-level`; debug unless given (benchmarks ask for warn). */
  logLevel?: string;
  /** The daemon's stderr goes to ours instead of to logs() (benchmarks show warnings as they come). */
  showLogs?: boolean;
  /** The daemon's stderr is appended to this file instead of kept for logs(). */
  logFile?: string;
  /** Added to the daemon's environment. */
  env?: Record<string, string>;
}

export interface TestDaemon {
  root: string;
  state: string;
  socket: string;
  configPath: string;
  client: CriClient;
  child: ChildProcess;
  /** Everything the daemon wrote to stderr so far (pino JSON lines). */
  logs(): string;
  /** SIGTERM (or the given signal) and wait for exit; returns the exit code or signal. */
  stop(signal?: NodeJS.Signals): Promise<number | string | null>;
  /** stop() and remove the temp dirs (unless the root was passed in). */
  dispose(): Promise<void>;
}

export async function startDaemon(opts: DaemonOptions = {}): Promise<TestDaemon> {
  const base = await mkdtemp(join(tmpdir(), 'berthd-test-'));
  const root = opts.root ?? join(base, 'root');
  const state = opts.state ?? join(base, opts.stateName ?? 'state');
  const socket = join(base, 'berth.sock');
  const configPath = join(base, 'config.toml');
  await writeFile(configPath, opts.config ?? '');
  const logFd = opts.logFile ? openSync(opts.logFile, 'a') : undefined;
  const child = spawn(
    opts.entry?.node ?? process.execPath,
    [opts.entry?.script ?? BERTHD, '--config', configPath, '--root', root, '--state', state, '--socket', socket, '--log-level', opts.logLevel ?? 'debug', ...(opts.extraArgs ?? [])],
    { stdio: ['ignore', 'ignore', logFd ?? (opts.showLogs ? 'inherit' : 'pipe')], env: { ...process.env, ...opts.env } },
  );
  if (logFd !== undefined) closeSync(logFd);
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const exited = new Promise<number | string | null>((resolve) => child.once('exit', (code, sig) => resolve(code ?? sig)));
  const client = new CriClient(socket);
  let disposed = false;
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | string | null> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return exited;
  };
  const daemon: TestDaemon = {
    root,
    state,
    socket,
    configPath,
    client,
    child,
    logs: () => stderr,
    stop,
    dispose: async () => {
      if (disposed) return;
      disposed = true;
      client.close();
      await stop();
      // A daemon stopped with SIGKILL leaves what it had pinned under its state (its netns pool at
      // least); a restart on that state would sweep it, a disposed one must not leave it mounted.
      if (!opts.state) await unmount(await mountsUnder(state));
      await rm(base, { recursive: true, force: true });
    },
  };
  // A bound, not a timing: a loaded machine or a big store (tens of thousands of records) may take
  // a while to come up.
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    try {
      await access(socket);
      await client.call('runtime', 'Version', {}, { timeoutMs: 2000 });
      return daemon;
    } catch {
      await sleep(50);
    }
  }
  await daemon.dispose();
  throw new Error(`berthd did not come up on ${socket}:\n${stderr}`);
}
