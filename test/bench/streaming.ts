// Streaming benchmark: berthd against Debian's containerd 1.6 (its CRI plugin), same machine, same
// busybox image, same client (berth's own, speaking SPDY/3.1 as crictl does). Measures
//   - exec round trip: Exec RPC + upgrade + `echo hi` + exit status, median of N (and the first
//     exec on its own: berth starts the container's exec helper then);
//   - port-forward throughput: 100 MB from a server in the pod through PortForward, MB/s;
//   - berthd's RSS and open fds before and after a hundred exec sessions.
// Each runtime gets a bridge network of its own (10.230.77.0/24, 10.230.78.0/24), removed at the end.
// Run with hack/bench-streaming.sh:
//   node --import tsx test/bench/streaming.ts [--runs N] [--mb M] [--only berth|containerd] [--seccomp RuntimeDefault|Unconfined]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { CriClient } from '../../src/client/cri-client.ts';
import { startRegistry } from '../helpers/registry.ts';
import { busyboxImage, pushImage } from '../helpers/images.ts';
import { startDaemon } from '../helpers/daemon.ts';
import { startContainerd } from '../helpers/containerd.ts';
import { collect, connectSpdy, spdyCommand, spdyForward } from '../helpers/streaming-client.ts';

interface Daemon {
  child: ChildProcess;
  client: CriClient;
  /** Ends the daemon (and removes berthd's own temp dirs). */
  stop(): Promise<void>;
}

interface Runtime {
  name: string;
  start(dir: string, registryHost: string): Promise<Daemon>;
}

const berth: Runtime = {
  name: 'berth',
  async start(dir) {
    // berth's own bridge network on a subnet and bridge name of the benchmark's (see cleanUpNetworks).
    const config = `[network]\ncni_conf_dir = "${dir}/cni"\ndefault_subnet = "${BERTH_SUBNET}"\ndefault_bridge = "bsb1"\n`;
    const d = await startDaemon({ config, logLevel: 'warn', showLogs: true });
    return { child: d.child, client: d.client, stop: d.dispose };
  },
};

const containerd: Runtime = {
  name: 'containerd',
  async start(dir, registryHost) {
    // A pod network of its own (host networking trips runc's sysfs mount in some sandboxes).
    await mkdir(join(dir, 'cni'), { recursive: true });
    await writeFile(
      join(dir, 'cni', '10-bench.conflist'),
      JSON.stringify({
        cniVersion: '0.4.0',
        name: 'stream-bench',
        plugins: [
          { type: 'bridge', bridge: 'bsb0', isGateway: true, ipMasq: false, ipam: { type: 'host-local', ranges: [[{ subnet: '10.230.77.0/24' }]] } },
          { type: 'loopback' },
        ],
      }),
    );
    return startContainerd({ dir, sandboxImage: `${registryHost}/pause:bench`, cniConfDir: join(dir, 'cni'), ...(process.env.CONTAINERD_LOG ? { log: process.env.CONTAINERD_LOG } : {}) });
  },
};

const BERTH_SUBNET = '10.230.78.0/24';

/** Removes what the two networks leave on the host: bridges, berth's masquerade rule, IPAM leases. */
async function cleanUpNetworks(): Promise<void> {
  const run = (cmd: string, args: string[]): Promise<void> =>
    new Promise((resolve) => spawn(cmd, args, { stdio: 'ignore' }).once('close', () => resolve()).once('error', () => resolve()));
  for (const bridge of ['bsb0', 'bsb1']) await run('ip', ['link', 'del', bridge]);
  await run('iptables', ['-t', 'nat', '-D', 'POSTROUTING', '-s', BERTH_SUBNET, '!', '-d', BERTH_SUBNET, '-m', 'comment', '--comment', `berth default network ${BERTH_SUBNET}`, '-j', 'MASQUERADE']);
  await rm('/var/lib/cni/networks/stream-bench', { recursive: true, force: true });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
};

async function usage(pid: number): Promise<{ rssMiB: number; fds: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024;
  return { rssMiB: rss, fds: (await readdir(`/proc/${pid}/fd`)).length };
}

interface Result {
  execMs: number;
  /** The container's first exec: berth starts the container's exec helper then (src/container/exec-helper.ts). */
  firstExecMs: number;
  pfMBs: number;
  before: { rssMiB: number; fds: number };
  after: { rssMiB: number; fds: number };
}

/** One runtime with a pod serving `mb` MiB on `port`, ready for exec and port-forward. */
interface Target {
  rt: Runtime;
  daemon: Daemon;
  dir: string;
  podId?: string;
  ctrId: string;
  port: number;
}

async function setUp(rt: Runtime, registryHost: string, mb: number, seccomp: string): Promise<Target> {
  const dir = await mkdtemp(join(tmpdir(), `bench-stream-${rt.name}-`));
  const daemon = await rt.start(dir, registryHost);
  const t: Target = { rt, daemon, dir, ctrId: '', port: 19000 + Math.floor(Math.random() * 1000) };
  const { client } = daemon;
  try {
    const image = `${registryHost}/busybox:bench`;
    await client.call('image', 'PullImage', { image: { image } });
    const podConfig = {
      metadata: { name: 'stream-bench', namespace: 'bench', uid: `${Date.now()}`, attempt: 0 },
      log_directory: join(dir, 'logs'),
    };
    ({ pod_sandbox_id: t.podId } = await client.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig }));
    ({ container_id: t.ctrId } = await client.call<{ container_id: string }>('runtime', 'CreateContainer', {
      pod_sandbox_id: t.podId,
      config: {
        metadata: { name: 'c', attempt: 0 },
        image: { image },
        // The same seccomp profile on both: runc compiles it at every exec, which dominates exec time.
        linux: { security_context: { seccomp: { profile_type: seccomp } } },
        // Serves `mb` MiB to every connection on the port.
        command: ['sh', '-c', `dd if=/dev/zero of=/tmp/blob bs=1048576 count=${mb} 2>/dev/null; while true; do nc -l -p ${t.port} < /tmp/blob; done`],
        log_path: 'c.log',
      },
      sandbox_config: podConfig,
    }));
    await client.call('runtime', 'StartContainer', { container_id: t.ctrId });
    return t;
  } catch (err) {
    await tearDown(t);
    throw err;
  }
}

async function tearDown(t: Target): Promise<void> {
  const { client } = t.daemon;
  if (t.podId) {
    await client.call('runtime', 'StopPodSandbox', { pod_sandbox_id: t.podId }).catch(() => {});
    await client.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: t.podId }).catch(() => {});
  }
  await t.daemon.stop();
  await rm(t.dir, { recursive: true, force: true }).catch(() => {});
}

/** Exec RPC + SPDY upgrade + `echo hi` + exit status, in milliseconds. */
async function execOnce(t: Target): Promise<number> {
  const started = performance.now();
  const { url } = await t.daemon.client.call<{ url: string }>('runtime', 'Exec', { container_id: t.ctrId, cmd: ['echo', 'hi'], stdout: true, stderr: true });
  const r = await spdyCommand(url, {});
  if (r.stdout.toString() !== 'hi\n' || r.exitCode !== 0) throw new Error(`${t.rt.name}: exec answered ${JSON.stringify(r)}`);
  return performance.now() - started;
}

/** MB/s of one forwarded connection reading everything the pod serves. */
async function forwardOnce(t: Target, bytes: number): Promise<number> {
  const { url } = await t.daemon.client.call<{ url: string }>('runtime', 'PortForward', { pod_sandbox_id: t.podId, port: [t.port] });
  const { session } = await connectSpdy(url, ['portforward.k8s.io']);
  try {
    for (let attempt = 0; ; attempt++) {
      const started = performance.now();
      const { data, errorText } = await spdyForward(session, t.port, attempt);
      // Half-closing first would make busybox nc quit early: read everything, then close.
      const got = await collect(data);
      data.end();
      const err = await errorText;
      if (got.length === bytes) return got.length / 1e6 / ((performance.now() - started) / 1000);
      // The server loop may be between two listens: try again shortly.
      if (attempt > 50) throw new Error(`${t.rt.name}: port-forward got ${got.length} bytes: ${err}`);
      await sleep(100);
    }
  } finally {
    session.destroy();
  }
}

/**
 * Both runtimes run side by side and every measurement alternates between them, so a busy
 * moment on a shared machine lands on both rather than skewing the ratio.
 */
async function measure(targets: Target[], runs: number, mb: number): Promise<Map<Target, Result>> {
  const times = new Map<Target, number[]>(targets.map((t) => [t, []]));
  const rates = new Map<Target, number[]>(targets.map((t) => [t, []]));
  const first = new Map<Target, number>();
  // The first exec is reported on its own; it and two more warm up before the median's runs.
  for (const t of targets) for (let i = 0; i < 3; i++) {
    const ms = await execOnce(t);
    if (i === 0) first.set(t, ms);
  }
  for (let i = 0; i < runs; i++) {
    for (const t of i % 2 ? [...targets].reverse() : targets) times.get(t)?.push(await execOnce(t));
  }
  for (let i = 0; i < 3; i++) for (const t of targets) rates.get(t)?.push(await forwardOnce(t, mb * 1024 * 1024));
  const results = new Map<Target, Result>();
  for (const t of targets) {
    const before = await usage(t.daemon.child.pid as number);
    for (let i = 0; i < 100; i++) await execOnce(t);
    await sleep(1000); // let teardown finish before reading /proc
    const after = await usage(t.daemon.child.pid as number);
    results.set(t, { execMs: median(times.get(t) ?? []), firstExecMs: first.get(t) ?? NaN, pfMBs: median(rates.get(t) ?? []), before, after });
  }
  return results;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { runs: { type: 'string', default: '30' }, mb: { type: 'string', default: '100' }, only: { type: 'string' }, seccomp: { type: 'string', default: 'RuntimeDefault' } },
  });
  const runs = Number(values.runs);
  const mb = Number(values.mb);
  const registry = await startRegistry();
  try {
    await pushImage(registry.url, 'busybox', 'bench', await busyboxImage());
    await pushImage(registry.url, 'pause', 'bench', await busyboxImage({ config: { Cmd: ['sleep', '2147483647'] } }));
    const results: Record<string, Result | string> = {};
    const targets: Target[] = [];
    try {
      for (const rt of [containerd, berth]) {
        if (values.only && values.only !== rt.name) continue;
        try {
          targets.push(await setUp(rt, registry.host, mb, values.seccomp as string));
        } catch (err) {
          results[rt.name] = `not measured: ${(err as Error).message}`;
        }
      }
      for (const [t, r] of await measure(targets, runs, mb)) results[t.rt.name] = r;
    } finally {
      for (const t of targets) await tearDown(t);
      await cleanUpNetworks();
    }
    for (const [name, r] of Object.entries(results)) {
      if (typeof r === 'string') console.log(`${name}: ${r}`);
      else {
        console.log(
          `${name}: exec echo hi median ${r.execMs.toFixed(1)} ms (first ${r.firstExecMs.toFixed(1)} ms); port-forward ${r.pfMBs.toFixed(0)} MB/s over ${mb} MiB; ` +
            `100 execs: RSS ${r.before.rssMiB.toFixed(0)} -> ${r.after.rssMiB.toFixed(0)} MiB, fds ${r.before.fds} -> ${r.after.fds}`,
        );
      }
    }
    const b = results.berth;
    const c = results.containerd;
    if (typeof b === 'object' && typeof c === 'object') {
      console.log(`ratios berth/containerd: exec latency ${(b.execMs / c.execMs).toFixed(2)} (target <= 0.70), port-forward throughput ${(b.pfMBs / c.pfMBs).toFixed(2)} (target >= 1.00)`);
    }
  } finally {
    await registry.stop();
  }
}

await main();
