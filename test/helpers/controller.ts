// Runs the real berth-controller (bin/berth-controller.js) against a fake API server, with the
// short watch and retry timings the tests need, and polls for conditions with a deadline.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { FakeApiServer } from './fake-apiserver.ts';
import { freePort } from './registry.ts';
import { poll } from './poll.ts';

export const CONTROLLER = fileURLToPath(new URL('../../bin/berth-controller.js', import.meta.url));

/** Timings small enough for tests; every one is a flag of the controller. */
export const TEST_TIMING = [
  '--watch-timeout', '3-6',
  '--idle-timeout-ms', '2500',
  '--relist-jitter-ms', '200',
  '--backoff-ms', '100-1000',
  '--runtime-poll-ms', '300',
  '--status-interval-ms', '100',
  '--time-scale', '0.1',
];

export interface RunningController {
  child: ChildProcess;
  metricsUrl: string;
  healthUrl: string;
  logs(): string;
  stop(): Promise<void>;
}

export async function startController(api: FakeApiServer, token: string, args: string[], opts: { entry?: string; timing?: string[]; nodeArgs?: string[] } = {}): Promise<RunningController> {
  const kubeconfig = await api.kubeconfig(token);
  const metricsPort = await freePort();
  const healthPort = await freePort();
  const child = spawn(
    process.execPath,
    [...(opts.nodeArgs ?? []), opts.entry ?? CONTROLLER, '--kubeconfig', kubeconfig, '--log-level', 'debug', '--metrics-addr', `127.0.0.1:${metricsPort}`, '--health-addr', `127.0.0.1:${healthPort}`, ...(opts.timing ?? TEST_TIMING), ...args],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-200_000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ctl: RunningController = {
    child,
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
    healthUrl: `http://127.0.0.1:${healthPort}`,
    logs: () => stderr,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
  await waitFor(async () => (await fetch(`${ctl.healthUrl}/healthz`).then((r) => r.ok).catch(() => false)) || child.exitCode !== null, 20_000, 'controller health endpoint');
  if (child.exitCode !== null) throw new Error(`berth-controller exited ${child.exitCode}:\n${stderr}`);
  return ctl;
}

/** Polls `check` until it returns a truthy value (returned) or the deadline passes; a throw counts as "not yet". */
export async function waitFor<T>(check: () => T | Promise<T>, timeoutMs: number, what: string, explain?: () => string): Promise<NonNullable<T>> {
  return (await poll(what, check, { timeoutMs, intervalMs: 50, accept: Boolean, retryErrors: true, explain })) as NonNullable<T>;
}

/** A metric's value summed over label sets that contain `match` (e.g. `resource="nodes"`). */
export async function metric(ctl: RunningController, name: string, match = ''): Promise<number> {
  const text = await (await fetch(ctl.metricsUrl)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || !line.includes(match)) continue;
    const [series, value] = line.split(' ');
    if (series === name || series?.startsWith(`${name}{`)) sum += Number(value);
  }
  return sum;
}
