// Pod lifecycle benchmark: berthd against Debian's containerd 1.6 (its CRI plugin), same machine,
// same CNI network (one conflist both are pointed at), same images from a local registry (a pause
// image and a workload image, both built from the host's busybox). Both are driven through CRI with
// berth's own client, exactly as a kubelet would drive them.
//
// Phase 1 runs N pods through RunPodSandbox, CreateContainer, StartContainer, ContainerStatus,
// StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox, 2 pods at a time, and prints
// p50/p90 per operation with the berth/containerd ratio. Phase 2 starts 30 pods with one sleeping
// container each and prints the daemon's RSS (idle and with the pods) and what each pod costs in
// monitor and infra processes (conmon / shim / pause: PSS from smaps_rollup). Not a test: it
// asserts nothing, it measures.
//
// With --berth-log FILE, berthd logs at debug level to FILE: its per-step timings of RunPodSandbox,
// CreateContainer, RemoveContainer and the sandbox teardown (`ms` fields) show where the time goes.
//
//   node --import tsx test/bench/pod-lifecycle.ts [--pods N] [--density N] [--rounds R] [--only berth|containerd] [--berth-log FILE]
import { spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { CriClient } from '../../src/client/cri-client.ts';
import { startRegistry } from '../helpers/registry.ts';
import { busyboxImage, pushImage } from '../helpers/images.ts';
import { startDaemon } from '../helpers/daemon.ts';
import { containerdMissing, startContainerd } from '../helpers/containerd.ts';

const { values } = parseArgs({
  options: {
    pods: { type: 'string', default: '20' },
    density: { type: 'string', default: '30' },
    only: { type: 'string' },
    rounds: { type: 'string', default: '1' },
    'berth-log': { type: 'string' },
  },
});
const PODS = Number(values.pods);
const DENSITY = Number(values.density);
const ROUNDS = Number(values.rounds);
// Names and addresses of this run's own, so two runs on one machine do not meet.
const RUN = randomBytes(3).toString('hex');
const BRIDGE = `bntb${RUN}`;
const NETWORK = `bench-${RUN}`;
const SUBNET = `10.220.${240 + (randomBytes(1)[0] as number) % 16}.0/24`;
/** The pause process: what containerd runs as the sandbox (its image's entrypoint). */
const PAUSE_CMD = ['/bin/busybox', 'sleep', '2147483647'];
/** The workload: exits at once on SIGTERM, so StopContainer measures the stop path, not a grace period. */
const WORKLOAD_CMD = ['/bin/sh', '-c', "trap 'exit 0' TERM; /bin/busybox sleep 999999 & wait"];

interface Runtime {
  name: string;
  start(dir: string, env: BenchEnv): Promise<Running>;
}

/** A started runtime: `files` holds its root and state (its processes name it on their command lines). */
interface Running {
  child: ChildProcess;
  client: CriClient;
  files: string;
  stop(): Promise<void>;
}

interface BenchEnv {
  cniDir: string;
  pauseRef: string;
  workloadRef: string;
}

const berth: Runtime = {
  name: 'berth',
  async start(_dir, env) {
    const config = ['[network]', `cni_conf_dir = "${env.cniDir}"`, 'cni_bin_dirs = ["/usr/lib/cni"]', ''].join('\n');
    const logFile = values['berth-log'];
    const d = await startDaemon({ config, ...(logFile ? { logLevel: 'debug', logFile } : { logLevel: 'warn', showLogs: true }) });
    const stop = async (): Promise<void> => {
      d.client.close();
      await d.stop();
    };
    // Not dispose(): the state's mounts go first (see bench), then its files are removed.
    return { child: d.child, client: d.client, files: dirname(d.state), stop };
  },
};

const containerd: Runtime = {
  name: 'containerd',
  async start(dir, env) {
    const c = await startContainerd({ dir, sandboxImage: env.pauseRef, cniConfDir: env.cniDir });
    return { ...c, files: dir };
  },
};

const OPS = ['RunPodSandbox', 'CreateContainer', 'StartContainer', 'ContainerStatus', 'StopContainer', 'RemoveContainer', 'StopPodSandbox', 'RemovePodSandbox'] as const;
type Op = (typeof OPS)[number];

class Timings {
  readonly ops = new Map<string, number[]>();
  add(op: string, ms: number): void {
    (this.ops.get(op) ?? this.ops.set(op, []).get(op) as number[]).push(ms);
  }
}

function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

interface Pod {
  podId: string;
  containerId: string;
  podConfig: object;
}

/** A lifecycle runner for one daemon: each step timed into `t` when given. */
class Driver {
  readonly client: CriClient;
  readonly logRoot: string;
  readonly env: BenchEnv;
  constructor(client: CriClient, logRoot: string, env: BenchEnv) {
    this.client = client;
    this.logRoot = logRoot;
    this.env = env;
  }

  async #timed<T>(t: Timings | undefined, op: Op, call: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    const res = await call();
    t?.add(op, performance.now() - t0);
    return res;
  }

  async startPod(name: string, t?: Timings): Promise<Pod> {
    const logDir = join(this.logRoot, name);
    await mkdir(logDir, { recursive: true });
    const podConfig = {
      metadata: { name, uid: `uid-${name}`, namespace: 'bench', attempt: 0 },
      hostname: name,
      log_directory: logDir,
      // What the kubelet sends for a pod without shareProcessNamespace.
      linux: { security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
    };
    const { pod_sandbox_id: podId } = await this.#timed(t, 'RunPodSandbox', () =>
      this.client.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig }, { timeoutMs: 120_000 }),
    );
    const { container_id: containerId } = await this.#timed(t, 'CreateContainer', () =>
      this.client.call<{ container_id: string }>('runtime', 'CreateContainer', {
        pod_sandbox_id: podId,
        config: { metadata: { name: 'work', attempt: 0 }, image: { image: this.env.workloadRef }, command: WORKLOAD_CMD, log_path: 'work.log', linux: {} },
        sandbox_config: podConfig,
      }, { timeoutMs: 120_000 }),
    );
    await this.#timed(t, 'StartContainer', () => this.client.call('runtime', 'StartContainer', { container_id: containerId }, { timeoutMs: 120_000 }));
    return { podId, containerId, podConfig };
  }

  async stopPod(pod: Pod, t?: Timings): Promise<void> {
    await this.#timed(t, 'StopContainer', () => this.client.call('runtime', 'StopContainer', { container_id: pod.containerId, timeout: 10 }, { timeoutMs: 120_000 }));
    await this.#timed(t, 'RemoveContainer', () => this.client.call('runtime', 'RemoveContainer', { container_id: pod.containerId }, { timeoutMs: 120_000 }));
    await this.#timed(t, 'StopPodSandbox', () => this.client.call('runtime', 'StopPodSandbox', { pod_sandbox_id: pod.podId }, { timeoutMs: 120_000 }));
    await this.#timed(t, 'RemovePodSandbox', () => this.client.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: pod.podId }, { timeoutMs: 120_000 }));
  }

  async lifecycle(name: string, t: Timings): Promise<void> {
    const t0 = performance.now();
    const pod = await this.startPod(name, t);
    t.add('pod+container started', performance.now() - t0);
    const st = await this.#timed(t, 'ContainerStatus', () =>
      this.client.call<{ status: { state: string } }>('runtime', 'ContainerStatus', { container_id: pod.containerId }),
    );
    if (st.status.state !== 'CONTAINER_RUNNING') throw new Error(`container of ${name} is ${st.status.state}, not running`);
    await this.stopPod(pod, t);
  }
}

/** Runs `jobs` with at most `width` at once; the first failure stops handing out new jobs. */
async function inParallel(count: number, width: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) await job(next++);
  };
  await Promise.all(Array.from({ length: Math.min(width, count) }, worker));
}

interface Proc {
  pid: number;
  ppid: number;
  comm: string;
  cmdline: string;
}

async function processes(): Promise<Map<number, Proc>> {
  const out = new Map<number, Proc>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const ppid = Number(stat.slice(close + 2).split(' ')[1]);
      const cmdline = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0').join(' ').trim();
      out.set(Number(entry), { pid: Number(entry), ppid, comm, cmdline });
    } catch {
      // exited while we looked
    }
  }
  return out;
}

/** kB of a process: PSS (shared pages split among sharers) and RSS. */
async function memoryKb(pid: number): Promise<{ pss: number; rss: number }> {
  try {
    const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
    return { pss: Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0), rss: Number(/^Rss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0) };
  } catch {
    return { pss: 0, rss: 0 };
  }
}

interface Result {
  name: string;
  timings: Timings;
  idleRssMiB: number;
  loadedRssMiB: number;
  podProcs: Array<{ kind: string; count: number; pssKb: number; rssKb: number }>;
  error?: string;
  /** Census after every pod was removed. */
  leftovers?: string;
}

/**
 * Processes the pods added: monitors whose command line names this daemon's directory (a shim's
 * -address, conmon's paths) and everything below them. Other work on the machine is left out.
 */
function podProcesses(before: Map<number, Proc>, after: Map<number, Proc>, dir: string, daemonPid: number): Proc[] {
  const added = [...after.values()].filter((p) => !before.has(p.pid) && p.pid !== daemonPid);
  const ours = new Set(added.filter((p) => p.cmdline.includes(dir)).map((p) => p.pid));
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of added) {
      if (!ours.has(p.pid) && ours.has(p.ppid)) {
        ours.add(p.pid);
        grew = true;
      }
    }
  }
  return added.filter((p) => ours.has(p.pid));
}

/** Which processes a pod added: the monitor (conmon / shim), the infra (pause), the workload. */
function classify(p: Proc): 'workload' | 'pause' | 'monitor' | 'other' {
  if (p.cmdline.includes('999999') || p.cmdline.includes("trap 'exit 0' TERM")) return 'workload';
  if (p.cmdline === PAUSE_CMD.join(' ') || p.comm === 'pause' || p.comm === 'catatonit') return 'pause';
  if (p.comm === 'conmon' || p.comm.startsWith('containerd-shim')) return 'monitor';
  return 'other';
}

async function bench(rt: Runtime, env: BenchEnv): Promise<Result> {
  const dir = await mkdtemp(join(tmpdir(), `bench-pods-${rt.name}-`));
  const daemon = await rt.start(dir, env);
  const { child, client } = daemon;
  const driver = new Driver(client, join(dir, 'logs'), env);
  const result: Result = { name: rt.name, timings: new Timings(), idleRssMiB: 0, loadedRssMiB: 0, podProcs: [] };
  const live: Pod[] = [];
  try {
    for (const ref of [env.pauseRef, env.workloadRef]) await client.call('image', 'PullImage', { image: { image: ref } }, { timeoutMs: 300_000 });
    const pid = child.pid as number;
    // One untimed pod first: both daemons create the bridge and load lazily on their first pod.
    await driver.lifecycle('warmup', new Timings());
    result.idleRssMiB = (await memoryKb(pid)).rss / 1024;

    await inParallel(PODS, 2, (i) => driver.lifecycle(`life-${i}`, result.timings));

    const before = await processes();
    await inParallel(DENSITY, 2, async (i) => {
      live.push(await driver.startPod(`dense-${i}`));
    });
    result.loadedRssMiB = (await memoryKb(pid)).rss / 1024;
    const added = podProcesses(before, await processes(), daemon.files, pid);
    const byKind = new Map<string, { count: number; pssKb: number; rssKb: number }>();
    for (const p of added) {
      const kind = classify(p);
      const m = await memoryKb(p.pid);
      const acc = byKind.get(kind) ?? { count: 0, pssKb: 0, rssKb: 0 };
      byKind.set(kind, { count: acc.count + 1, pssKb: acc.pssKb + m.pss, rssKb: acc.rssKb + m.rss });
    }
    result.podProcs = [...byKind.entries()].map(([kind, v]) => ({ kind, ...v }));
  } catch (err) {
    result.error = (err as { details?: string; message: string }).details ?? (err as Error).message;
  } finally {
    // Pods first: containerd's shims (and berth's monitors) outlive their daemon by design.
    await inParallel(live.length, 2, (i) =>
      driver.stopPod(live[i] as Pod).catch((err: { details?: string; message: string }) => {
        console.error(`${rt.name}: tearing down pod ${(live[i] as Pod).podId} failed: ${err.details ?? err.message}`);
      }),
    );
    await daemon.stop();
    spawnSync('umount', ['-R', join(daemon.files, 'state')], { stdio: 'ignore' });
    // Every pod is gone now: whatever still names this run's network was left behind.
    const rules = spawnSync('iptables-save', ['-t', 'nat']).stdout.toString().split('\n').filter((l) => l.includes(`\\"${NETWORK}\\"`));
    const veths = spawnSync('ip', ['-o', 'link', 'show', 'master', BRIDGE]).stdout.toString().trim();
    result.leftovers = `${rules.length} iptables rules, ${veths ? veths.split('\n').length : 0} veths`;
    for (const d of new Set([daemon.files, dir])) await rm(d, { recursive: true, force: true }).catch((err: Error) => console.error(`could not remove ${d}: ${err.message}`));
  }
  return result;
}

function report(results: Result[]): void {
  const byName = new Map(results.map((r) => [r.name, r]));
  const b = byName.get('berth');
  const c = byName.get('containerd');
  const fmt = (n: number): string => (Number.isFinite(n) ? n.toFixed(0).padStart(6) : '     -');
  const ratio = (x: number, y: number): string => (Number.isFinite(x) && Number.isFinite(y) && y > 0 ? (x / y).toFixed(2).padStart(6) : '     -');
  console.log(`\nlifecycle: ${PODS} pods x ${ROUNDS} round(s), 2 at a time`);
  console.log(`  ${'operation (ms)'.padEnd(42)}  berth p50    p90 | containerd p50    p90 | ratio p50    p90`);
  for (const op of [...OPS, 'pod+container started']) {
    const bx = b?.timings.ops.get(op) ?? [];
    const cx = c?.timings.ops.get(op) ?? [];
    const [b50, b90, c50, c90] = [percentile(bx, 50), percentile(bx, 90), percentile(cx, 50), percentile(cx, 90)];
    console.log(`  ${op.padEnd(42)}     ${fmt(b50)} ${fmt(b90)} |         ${fmt(c50)} ${fmt(c90)} |    ${ratio(b50, c50)} ${ratio(b90, c90)}`);
  }
  console.log(`\nmemory with ${DENSITY} pods (one sleeping container each)`);
  for (const r of results) {
    if (r.error) console.log(`  ${r.name}: FAILED: ${r.error}`);
    const overhead = r.podProcs.filter((p) => p.kind !== 'workload');
    const pss = overhead.reduce((s, p) => s + p.pssKb, 0);
    const rss = overhead.reduce((s, p) => s + p.rssKb, 0);
    const growth = r.loadedRssMiB - r.idleRssMiB;
    console.log(`  ${r.name}: daemon RSS idle ${r.idleRssMiB.toFixed(1)} MiB, with pods ${r.loadedRssMiB.toFixed(1)} MiB (x${(r.loadedRssMiB / r.idleRssMiB).toFixed(2)})`);
    for (const p of r.podProcs) console.log(`    ${p.kind.padEnd(8)} ${String(p.count).padStart(3)} processes  PSS ${(p.pssKb / 1024).toFixed(1)} MiB  RSS ${(p.rssKb / 1024).toFixed(1)} MiB`);
    if (DENSITY > 0 && r.loadedRssMiB > 0) {
      console.log(`    per pod: monitor+infra PSS ${(pss / 1024 / DENSITY).toFixed(2)} MiB (RSS ${(rss / 1024 / DENSITY).toFixed(2)}), + daemon growth ${(growth / DENSITY).toFixed(2)} MiB = ${((pss / 1024 + growth) / DENSITY).toFixed(2)} MiB`);
    }
  }
  console.log('\ntargets: RunPodSandbox <= 0.4x containerd, StartContainer <= 0.5x, pod+container started <= 400 ms p50, <= 4 MB per pod, berthd RSS with pods <= 1.2x idle');
}

async function main(): Promise<void> {
  const missing = await containerdMissing();
  if (missing) throw new Error(missing);
  const work = await mkdtemp(join(tmpdir(), 'bench-pods-'));
  const registry = await startRegistry();
  try {
    await pushImage(registry.url, 'bench/pause', 'v1', await busyboxImage({ config: { Entrypoint: PAUSE_CMD, Cmd: [] } }));
    await pushImage(registry.url, 'bench/busybox', 'v1', await busyboxImage());
    const cniDir = join(work, 'net.d');
    await mkdir(cniDir);
    // One network for both daemons (they run one after the other): what a node admin would install.
    await writeFile(join(cniDir, '10-bench.conflist'), JSON.stringify({
      cniVersion: '1.0.0',
      name: NETWORK,
      plugins: [
        { type: 'bridge', bridge: BRIDGE, isGateway: true, ipMasq: true, hairpinMode: true, ipam: { type: 'host-local', ranges: [[{ subnet: SUBNET }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: join(work, 'ipam') } },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    }, null, 2));
    const env: BenchEnv = { cniDir, pauseRef: `${registry.host}/bench/pause:v1`, workloadRef: `${registry.host}/bench/busybox:v1` };
    const load = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
    console.log(`pause ${env.pauseRef} (${PAUSE_CMD.join(' ')}), workload ${env.workloadRef}; load average ${load} on ${spawnSync('nproc').stdout.toString().trim()} cores`);
    const runtimes = [containerd, berth].filter((r) => !values.only || r.name === values.only);
    const results = new Map<string, Result>();
    // Rounds alternate which daemon goes first, so a change in the machine's load hits both.
    for (let round = 1; round <= ROUNDS; round++) {
      for (const rt of round % 2 === 1 ? runtimes : [...runtimes].reverse()) {
        console.log(`round ${round}: ${rt.name} ...`);
        const r = await bench(rt, env);
        console.log(`  ${rt.name} left behind after removing every pod: ${r.leftovers ?? '?'}`);
        const pooled = results.get(rt.name);
        if (!pooled) {
          results.set(rt.name, r);
          continue;
        }
        for (const [op, xs] of r.timings.ops) for (const x of xs) pooled.timings.add(op, x);
        // Memory is the last round's: it does not pool.
        results.set(rt.name, { ...r, timings: pooled.timings, error: pooled.error ?? r.error });
      }
    }
    report([...results.values()]);
  } finally {
    await registry.stop();
    spawnSync('ip', ['link', 'del', BRIDGE], { stdio: 'ignore' });
    await rm(work, { recursive: true, force: true });
  }
}

await main();
