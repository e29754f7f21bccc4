// Cold-pull benchmark: berthd against Debian's containerd 1.6 (its CRI plugin), same machine, same
// registry, same image (~100 MB gzip over 7 layers, ~10k files), each on an empty store. Both are
// driven through CRI PullImage with berth's own CRI client. Prints each run, the medians, the
// ratio and berthd's peak RSS. Not a test: it asserts nothing, it measures.
//
//   node --import tsx test/bench/cold-pull.ts [--runs N] [--scale S]
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile, access, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { CriClient } from '../../src/client/cri-client.ts';
import { startRegistry } from '../helpers/registry.ts';
import { bigImage, pushImage } from '../helpers/images.ts';
import { BERTHD } from '../helpers/daemon.ts';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, scale: { type: 'string', default: '1' } } });
const RUNS = Number(values.runs);
const SCALE = Number(values.scale);

interface Runtime {
  name: string;
  start(dir: string): Promise<{ child: ChildProcess; socket: string }>;
}

async function waitForSocket(client: CriClient, child: ChildProcess, name: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}`);
    try {
      await client.call('runtime', 'Version', {}, { timeoutMs: 1000 });
      return;
    } catch {
      await sleep(50);
    }
  }
  throw new Error(`${name} did not come up`);
}

const berth: Runtime = {
  name: 'berth',
  async start(dir) {
    const socket = join(dir, 'berth.sock');
    await writeFile(join(dir, 'config.toml'), '');
    const child = spawn(process.execPath, [BERTHD, '--config', join(dir, 'config.toml'), '--root', join(dir, 'root'), '--state', join(dir, 'state'), '--socket', socket, '--log-level', 'warn'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    return { child, socket };
  },
};

const containerd: Runtime = {
  name: 'containerd',
  async start(dir) {
    const socket = join(dir, 'containerd.sock');
    const config = `version = 2
root = "${dir}/root"
state = "${dir}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "${socket}"
[ttrpc]
  address = "${dir}/containerd.sock.ttrpc"
[debug]
  address = "${dir}/debug.sock"
[plugins."io.containerd.grpc.v1.cri"]
  disable_apparmor = true
[plugins."io.containerd.grpc.v1.cri".cni]
  conf_dir = "${dir}/cni"
`;
    await writeFile(join(dir, 'config.toml'), config);
    const child = spawn('containerd', ['--config', join(dir, 'config.toml'), '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'ignore'] });
    return { child, socket };
  },
};

/** Flush dirty pages (the image build, the previous run) so writeback does not land inside a timed pull, then drop caches. */
async function dropCaches(): Promise<void> {
  spawnSync('sync');
  try {
    await writeFile('/proc/sys/vm/drop_caches', '3');
  } catch {
    // not permitted in some sandboxes; both runtimes then see the same warm registry files
  }
}

async function peakRssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

async function coldPull(rt: Runtime, ref: string): Promise<{ seconds: number; rssMiB: number }> {
  const dir = await mkdtemp(join(tmpdir(), `bench-${rt.name}-`));
  const { child, socket } = await rt.start(dir);
  const client = new CriClient(socket);
  try {
    await waitForSocket(client, child, rt.name);
    await dropCaches();
    const t0 = process.hrtime.bigint();
    await client.call('image', 'PullImage', { image: { image: ref } }, { timeoutMs: 600_000 });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const rssMiB = await peakRssMiB(child.pid ?? 0);
    return { seconds, rssMiB };
  } finally {
    client.close();
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
    // containerd leaves its overlay snapshots unmounted; removing the tree is enough.
    await rm(dir, { recursive: true, force: true });
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function main(): Promise<void> {
  await access('/usr/bin/containerd').catch(() => {
    throw new Error('containerd is not installed: run BERTH_BENCH=1 bash hack/install-deps.sh');
  });
  const registry = await startRegistry();
  const img = await bigImage({ scale: SCALE, seed: 'bench' });
  try {
    const compressed = img.layers.reduce((s, l) => s + l.size, 0);
    await pushImage(registry.url, 'bench/big', 'v1', img);
    const ref = `${registry.host}/bench/big:v1`;
    console.log(`image ${ref}: ${img.layers.length} layers, ${(compressed / 1e6).toFixed(1)} MB compressed, ${img.entries} tar entries`);
    const results: Record<string, Array<{ seconds: number; rssMiB: number }>> = { berth: [], containerd: [] };
    for (let run = 1; run <= RUNS; run++) {
      for (const rt of run % 2 === 1 ? [containerd, berth] : [berth, containerd]) {
        const r = await coldPull(rt, ref);
        results[rt.name]?.push(r);
        console.log(`run ${run} ${rt.name.padEnd(10)} ${r.seconds.toFixed(2)} s   peak RSS ${r.rssMiB.toFixed(0)} MiB`);
      }
    }
    const b = median(results.berth?.map((r) => r.seconds) ?? []);
    const c = median(results.containerd?.map((r) => r.seconds) ?? []);
    const rss = Math.max(...(results.berth?.map((r) => r.rssMiB) ?? []));
    console.log(`median cold pull: berth ${b.toFixed(2)} s, containerd ${c.toFixed(2)} s, ratio berth/containerd ${(b / c).toFixed(2)} (target <= 0.60)`);
    console.log(`berthd peak RSS: ${rss.toFixed(0)} MiB`);
  } finally {
    await img.cleanup();
    await registry.stop();
  }
}

await main();
