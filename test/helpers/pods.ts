// A berthd ready to run pods for end-to-end tests: a registry with the busybox fixture pulled, the
// default bridge network on its own subnet and bridge name (10.210.0.0/16, brt*), and helpers to
// build pod and container configs and to take a census of what the daemon left on the host.
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startDaemon, type TestDaemon } from './daemon.ts';
import { startRegistry, type TestRegistry } from './registry.ts';
import { busyboxImage, pushImage, type ImageSpec } from './images.ts';
import { runCommand } from '../../src/util/run-command.ts';
import { mountsUnder } from '../../src/util/mount.ts';
import { removeMasquerade } from '../../src/network/masquerade.ts';
import { poll } from './poll.ts';

export const BUSYBOX = 'docker.io/library/busybox:latest';

export interface PodEnv {
  daemon: TestDaemon;
  registry: TestRegistry;
  logDir: string;
  cniDir: string;
  bridge: string;
  /** Restart berthd on the same root and state (after stop() or a kill). */
  restart(): Promise<TestDaemon>;
  dispose(): Promise<void>;
}

export interface PodEnvOptions {
  /** Extra images to push as docker.io/library/<repo>:latest. */
  images?: Record<string, Partial<ImageSpec>>;
  /** First two octets of the pod subnet and the bridge name prefix (helpers share a machine). */
  network?: { subnetPrefix: string; bridgePrefix: string };
  /** `[network] netns_pool`; the daemon's default when left out. */
  netnsPool?: number;
  /** The daemon's state dir name (startDaemon's `stateName`). */
  stateName?: string;
  /** More TOML for the daemon's config (whole tables, e.g. `[runtime]`). */
  extraConfig?: string;
}

export async function startPodEnv(opts: PodEnvOptions = {}): Promise<PodEnv> {
  const registry = await startRegistry();
  await pushImage(registry.url, 'library/busybox', 'latest', await busyboxImage());
  for (const [repo, spec] of Object.entries(opts.images ?? {})) {
    await pushImage(registry.url, `library/${repo}`, 'latest', await busyboxImage(spec));
  }
  const base = await mkdtemp(join(tmpdir(), 'berth-pods-'));
  const logDir = join(base, 'logs');
  const cniDir = join(base, 'cni');
  // A /24 and a bridge name of our own, so parallel test files never share a network.
  const n = 1 + (randomBytes(1)[0] as number) % 250;
  const net = opts.network ?? { subnetPrefix: '10.210', bridgePrefix: 'brt' };
  const subnet = `${net.subnetPrefix}.${n}.0/24`;
  const bridge = `${net.bridgePrefix}${randomBytes(3).toString('hex')}`;
  const config = [
    '[registry.hosts."docker.io"]',
    `mirrors = ["http://${registry.host}"]`,
    'skip_upstream = true',
    '[network]',
    `cni_conf_dir = "${cniDir}"`,
    `default_subnet = "${subnet}"`,
    `default_bridge = "${bridge}"`,
    ...(opts.netnsPool !== undefined ? [`netns_pool = ${opts.netnsPool}`] : []),
    ...(opts.extraConfig ? [opts.extraConfig] : []),
  ].join('\n');
  let daemon = await startDaemon({ config, ...(opts.stateName ? { stateName: opts.stateName } : {}) });
  const firstBase = dirname(daemon.root);
  await daemon.client.call('image', 'PullImage', { image: { image: 'busybox' } });
  for (const repo of Object.keys(opts.images ?? {})) await daemon.client.call('image', 'PullImage', { image: { image: repo } });
  const env: PodEnv = {
    get daemon() {
      return daemon;
    },
    registry,
    logDir,
    cniDir,
    bridge,
    restart: async () => {
      daemon.client.close();
      await daemon.stop();
      // A restarted daemon's own temp dir holds only its socket and config; the first one's holds root and state.
      if (dirname(daemon.configPath) !== firstBase) await rm(dirname(daemon.configPath), { recursive: true, force: true });
      daemon = await startDaemon({ config, root: daemon.root, state: daemon.state });
      return daemon;
    },
    dispose: async () => {
      try {
        await removeAllPods(daemon).catch(() => undefined);
        await daemon.stop();
        // The daemon leaves its shared netns directory mounted (as `ip netns` does /run/netns).
        for (const m of await mountsUnder(daemon.state)) await runCommand('umount', ['-l', m], { step: 'unmount test leftovers', timeoutMs: 5000 });
        await daemon.dispose();
        await rm(firstBase, { recursive: true, force: true });
      } finally {
        await registry.stop();
      }
      await runCommand('ip', ['link', 'del', bridge], { step: 'remove test bridge', timeoutMs: 5000, okCodes: [1] }).catch(() => undefined);
      await removeMasquerade(subnet);
      await rm(base, { recursive: true, force: true });
    },
  };
  return env;
}

/** Removes every pod (CRI and CLI owned) the daemon knows. */
export async function removeAllPods(d: TestDaemon): Promise<void> {
  const { items } = await d.client.call<{ items: Array<{ id: string }> }>('runtime', 'ListPodSandbox', {});
  for (const p of items) await d.client.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: p.id });
}

let podCounter = 0;

export function podConfig(env: PodEnv, overrides: Record<string, unknown> = {}, opts: { hostNetwork?: boolean } = {}): Record<string, unknown> {
  const name = `pod${++podCounter}-${randomBytes(3).toString('hex')}`;
  return {
    metadata: { name, namespace: 'test', uid: randomBytes(8).toString('hex'), attempt: 0 },
    hostname: name,
    log_directory: join(env.logDir, name),
    linux: {
      security_context: { namespace_options: { network: opts.hostNetwork ? 'NODE' : 'POD', pid: 'CONTAINER', ipc: 'POD' } },
    },
    ...overrides,
  };
}

export function containerConfig(name: string, command: string[], overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    metadata: { name, attempt: 0 },
    image: { image: BUSYBOX },
    command,
    log_path: `${name}.log`,
    ...overrides,
  };
}

/** Runs a pod with one container started; returns their IDs. */
export async function runPodWith(env: PodEnv, command: string[], opts: { pod?: Record<string, unknown>; container?: Record<string, unknown>; hostNetwork?: boolean } = {}): Promise<{ podId: string; ctrId: string; pod: Record<string, unknown> }> {
  const pod = podConfig(env, opts.pod, { hostNetwork: opts.hostNetwork });
  const c = env.daemon.client;
  const { pod_sandbox_id: podId } = await c.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: pod });
  const { container_id: ctrId } = await c.call<{ container_id: string }>('runtime', 'CreateContainer', {
    pod_sandbox_id: podId,
    config: containerConfig('main', command, opts.container),
    sandbox_config: pod,
  });
  await c.call('runtime', 'StartContainer', { container_id: ctrId });
  return { podId, ctrId, pod };
}

export interface ContainerStatusView {
  id: string;
  state: string;
  exit_code: number;
  reason: string;
  message: string;
  started_at: number;
  finished_at: number;
  created_at: number;
  log_path: string;
  image_ref: string;
  mounts: Array<{ container_path: string; host_path: string; readonly: boolean }>;
}

export async function containerStatus(d: TestDaemon, id: string, verbose = false): Promise<{ status: ContainerStatusView; info: Record<string, string> }> {
  return d.client.call('runtime', 'ContainerStatus', { container_id: id, verbose });
}

/** Polls until `check` returns a value (not undefined) or `ms` pass; a throw counts as "not yet". */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  return (await poll(what, check, { timeoutMs: ms, intervalMs: 50, accept: (v) => v !== undefined, retryErrors: true })) as T;
}

export async function waitExited(d: TestDaemon, id: string, ms = 20_000): Promise<ContainerStatusView> {
  return waitFor(`container ${id} to exit`, async () => {
    const { status } = await containerStatus(d, id);
    return status.state === 'CONTAINER_EXITED' ? status : undefined;
  }, ms);
}

/** What a daemon has on the host: mounts under its dirs, its conmons, its pinned netns. */
export interface Census {
  mounts: string[];
  conmons: number[];
  netns: string[];
}

export async function census(d: TestDaemon): Promise<Census> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  const mounts = info.split('\n').map((l) => l.split(' ')[4] ?? '').filter((p) => p.startsWith(d.root) || p.startsWith(d.state));
  const conmons: number[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    if (/\) Z /.test(stat)) continue; // a zombie waiting for init to reap it holds nothing
    if ((cmd.startsWith('conmon') || cmd.includes('/conmon\0')) && cmd.includes(d.state)) conmons.push(Number(pid));
  }
  const netns = mounts.filter((m) => m.includes('/netns/'));
  return { mounts, conmons, netns };
}

/**
 * Cgroups still present for these containers, in any v1 controller or in v2. Other daemons on the
 * host share the /berth parent, so a test names the containers it made.
 */
export async function cgroupsLeft(containerIds: readonly string[]): Promise<string[]> {
  const roots = (await readdir('/sys/fs/cgroup').catch(() => [] as string[])).map((c) => `/sys/fs/cgroup/${c}/berth`);
  const left: string[] = [];
  for (const root of [...roots, '/sys/fs/cgroup/berth']) {
    for (const id of containerIds) {
      if (await stat(`${root}/${id}`).then(() => true, () => false)) left.push(`${root}/${id}`);
    }
  }
  return left;
}

/** Those of `pids` that still run (zombies awaiting their reaper do not count). */
export async function alive(pids: readonly number[]): Promise<number[]> {
  const out: number[] = [];
  for (const pid of pids) {
    const st = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    if (st && !/\) Z /.test(st)) out.push(pid);
  }
  return out;
}
