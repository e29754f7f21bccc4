// Debian's containerd 1.6 (its CRI plugin) as a second runtime on this machine: the benchmarks
// measure berth against it and the installer test removes its pods. One config for all of them,
// written into a dir of the caller's; started, waited for until it answers CRI, and stopped here.
import { spawn, type ChildProcess } from 'node:child_process';
import { access, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CriClient } from '../../src/client/cri-client.ts';
import { until } from './poll.ts';

export const CONTAINERD = '/usr/bin/containerd';

/** Why containerd cannot run here, or undefined when it can. */
export async function containerdMissing(): Promise<string | undefined> {
  return access(CONTAINERD).then(
    () => undefined,
    () => `Debian's containerd is not installed (${CONTAINERD}): run BERTH_BENCH=1 bash hack/install-deps.sh`,
  );
}

export interface ContainerdOptions {
  /** Its root, state, config and debug socket go here. */
  dir: string;
  /** The CRI socket; `<dir>/containerd.sock` unless given. */
  socket?: string;
  /** The image pods' sandboxes run (from a test registry: there is no network here). */
  sandboxImage?: string;
  /** The CNI config dir, with Debian's plugins (/usr/lib/cni); containerd's defaults when left out. */
  cniConfDir?: string;
  /** Shows containerd's log on stderr at this level; only warnings, and hidden, when left out. */
  log?: string;
}

export interface TestContainerd {
  socket: string;
  client: CriClient;
  child: ChildProcess;
  /** Closes the client, SIGTERMs containerd and waits for it to exit. Its shims outlive it by design. */
  stop(): Promise<void>;
}

export async function startContainerd(opts: ContainerdOptions): Promise<TestContainerd> {
  const { dir } = opts;
  const socket = opts.socket ?? join(dir, 'containerd.sock');
  const config = [
    'version = 2',
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    'disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing"]',
    '[grpc]',
    `  address = "${socket}"`,
    '[ttrpc]',
    `  address = "${socket}.ttrpc"`,
    '[debug]',
    `  address = "${dir}/debug.sock"`,
    '[plugins."io.containerd.grpc.v1.cri"]',
    '  disable_apparmor = true',
    // Some VMs refuse negative oom_score_adj (containerd gives pause -998): clamp to containerd's own.
    '  restrict_oom_score_adj = true',
    ...(opts.sandboxImage ? [`  sandbox_image = "${opts.sandboxImage}"`] : []),
    ...(opts.cniConfDir ? ['[plugins."io.containerd.grpc.v1.cri".cni]', '  bin_dir = "/usr/lib/cni"', `  conf_dir = "${opts.cniConfDir}"`] : []),
    '',
  ].join('\n');
  await writeFile(join(dir, 'config.toml'), config);
  const child = spawn(CONTAINERD, ['--config', join(dir, 'config.toml'), '--log-level', opts.log ?? 'warn'], {
    stdio: ['ignore', 'ignore', opts.log ? 'inherit' : 'ignore'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const client = new CriClient(socket);
  const stop = async (): Promise<void> => {
    client.close();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  try {
    await until(
      'containerd answers CRI Version',
      async () => {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`containerd exited with ${child.exitCode ?? child.signalCode} before it answered`);
        return client.call('runtime', 'Version', {}, { timeoutMs: 1000 }).then(
          () => true,
          () => false,
        );
      },
      60_000,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { socket, client, child, stop };
}
