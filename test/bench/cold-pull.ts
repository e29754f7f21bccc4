// Image-path benchmark: berthd against Debian's containerd 1.6 (its CRI plugin), same machine, same
// registry, both driven through CRI with berth's own grpc-js client. Each run starts each runtime
// on an empty root and measures, in this order:
//   - idle RSS after start (nothing pulled);
//   - the per-call floor: p50 of Version and ListImages called in a loop;
//   - a small image (busybox-sized, ~1 MB): PullImage after RemoveImage, and RemoveImage, p50;
//   - a cold pull of the big image (~100 MB gzip over 7 layers, ~10k files), page cache dropped;
//   - peak RSS (VmHWM) up to the end of that pull, and (first run only) RSS 30 s after it.
// Each run also pulls the big image with the Node floor (pull-floor.ts: only the work any pull
// must do, in the best shape Node allows), so the cold pull's ratio can be read against the
// floor's ratio of the same run. Prints every figure with containerd beside it and the ratios.
// Not a test: it asserts nothing. --cold-only measures only the cold pulls (quick iterations).
//
//   node --import tsx test/bench/cold-pull.ts [--runs N] [--scale S] [--calls N] [--cold-only]
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { CriClient } from '../../src/client/cri-client.ts';
import { startRegistry } from '../helpers/registry.ts';
import { bigImage, busyboxImage, pushImage } from '../helpers/images.ts';
import { startDaemon } from '../helpers/daemon.ts';
import { containerdMissing, startContainerd } from '../helpers/containerd.ts';
import { floorPull, type FloorResult } from './pull-floor.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    scale: { type: 'string', default: '1' },
    calls: { type: 'string', default: '400' },
    settle: { type: 'string', default: '30' },
    'cold-only': { type: 'boolean', default: false },
  },
});
const COLD_ONLY = values['cold-only'];
const RUNS = Number(values.runs);
const SCALE = Number(values.scale);
const CALLS = Number(values.calls);
const SETTLE_S = Number(values.settle);
const SMALL_PULLS = 7;

interface Runtime {
  name: string;
  /** Starts the runtime, with `dir` for its files; stop() ends it (and removes berthd's own temp dirs). */
  start(dir: string): Promise<{ child: ChildProcess; client: CriClient; stop(): Promise<void> }>;
}

const berth: Runtime = {
  name: 'berth',
  async start() {
    const d = await startDaemon({ logLevel: 'warn', showLogs: true });
    return { child: d.child, client: d.client, stop: d.dispose };
  },
};

const containerd: Runtime = {
  name: 'containerd',
  async start(dir) {
    const d = await startContainerd({ dir, cniConfDir: join(dir, 'cni') });
    // berth marks its snapshot root as an ext4 top directory (src/snapshot/store.ts); containerd's
    // gets the same hint, so that on a journal-less ext4 (as here) neither pull steps past the
    // inodes the previous run's removal just freed, and the ratio compares runtimes, not allocators.
    spawnSync('chattr', ['+T', join(dir, 'root', 'io.containerd.snapshotter.v1.overlayfs', 'snapshots')], { stdio: 'ignore' });
    return d;
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

async function rssMiB(pid: number, field: 'VmRSS' | 'VmHWM' | 'RssAnon' | 'RssFile'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return kb / 1024;
}

/** User + system CPU time of a process so far (every thread, reaped children not included). */
async function cpuSeconds(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  // utime and stime are fields 14 and 15 of stat(5), counted in clock ticks (USER_HZ, 100 on Linux).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function msOf(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

interface RunResult {
  idleMiB: number;
  /** Anonymous and file-backed parts of idleMiB (file-backed: the binary's and libraries' pages, shared). */
  idleSplit: [number, number];
  afterSplit?: [number, number];
  versionMs: number;
  listMs: number;
  smallPullMs: number;
  removeMs: number;
  coldPullS: number;
  /** CPU seconds the runtime's process used during the cold pull (all its threads). */
  coldCpuS: number;
  peakMiB: number;
  afterMiB?: number;
}

async function oneRun(rt: Runtime, small: string, big: string, settle: boolean): Promise<RunResult> {
  const dir = await mkdtemp(join(tmpdir(), `bench-${rt.name}-`));
  const daemon = await rt.start(dir);
  const { child, client } = daemon;
  const pid = child.pid ?? 0;
  try {
    await sleep(2000);
    const idleMiB = await rssMiB(pid, 'VmRSS');
    const idleSplit: [number, number] = [await rssMiB(pid, 'RssAnon'), await rssMiB(pid, 'RssFile')];

    const loop = async (method: string, service: 'runtime' | 'image'): Promise<number> => {
      for (let i = 0; i < 50; i++) await client.call(service, method, {});
      const times: number[] = [];
      for (let i = 0; i < CALLS; i++) times.push(await msOf(() => client.call(service, method, {})));
      return median(times);
    };
    const versionMs = COLD_ONLY ? NaN : await loop('Version', 'runtime');
    const listMs = COLD_ONLY ? NaN : await loop('ListImages', 'image');

    const pulls: number[] = [];
    const removes: number[] = [];
    // The first pull opens the registry connection; it is not counted.
    await client.call('image', 'PullImage', { image: { image: small } }, { timeoutMs: 60_000 });
    await client.call('image', 'RemoveImage', { image: { image: small } });
    for (let i = 0; i < (COLD_ONLY ? 0 : SMALL_PULLS); i++) {
      pulls.push(await msOf(() => client.call('image', 'PullImage', { image: { image: small } }, { timeoutMs: 60_000 })));
      removes.push(await msOf(() => client.call('image', 'RemoveImage', { image: { image: small } })));
    }

    await dropCaches();
    const cpu0 = await cpuSeconds(pid);
    const coldMs = await msOf(() => client.call('image', 'PullImage', { image: { image: big } }, { timeoutMs: 600_000 }));
    const coldCpuS = (await cpuSeconds(pid)) - cpu0;
    const peakMiB = await rssMiB(pid, 'VmHWM');
    let afterMiB: number | undefined;
    let afterSplit: [number, number] | undefined;
    if (settle) {
      await sleep(SETTLE_S * 1000);
      afterMiB = await rssMiB(pid, 'VmRSS');
      afterSplit = [await rssMiB(pid, 'RssAnon'), await rssMiB(pid, 'RssFile')];
    }
    return { idleMiB, idleSplit, ...(afterSplit ? { afterSplit } : {}), versionMs, listMs, smallPullMs: median(pulls), removeMs: median(removes), coldPullS: coldMs / 1000, coldCpuS, peakMiB, ...(afterMiB === undefined ? {} : { afterMiB }) };
  } finally {
    await daemon.stop();
    // containerd leaves its overlay snapshots unmounted; removing the tree is enough.
    await rm(dir, { recursive: true, force: true });
  }
}

const print = (line: string | undefined): void => {
  if (line !== undefined) console.log(line);
};

const loadAverage = (): string => spawnSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).stdout.split(' ').slice(0, 3).join(' ');

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/** One line of the summary; none for a figure this run did not measure (--cold-only). */
function row(label: string, b: number, c: number, unit: string, digits: number, target?: string): string | undefined {
  if (Number.isNaN(b)) return undefined;
  const ratio = (b / c).toFixed(2);
  return `${label.padEnd(34)} ${`${b.toFixed(digits)} ${unit}`.padStart(11)} ${`${c.toFixed(digits)} ${unit}`.padStart(11)}   ${ratio.padStart(5)}x${target ? `   (target ${target})` : ''}`;
}

async function main(): Promise<void> {
  const missing = await containerdMissing();
  if (missing) throw new Error(missing);
  const registry = await startRegistry();
  const img = await bigImage({ scale: SCALE, seed: 'bench' });
  try {
    const compressed = img.layers.reduce((s, l) => s + l.size, 0);
    await pushImage(registry.url, 'bench/big', 'v1', img);
    const smallImg = await busyboxImage();
    await pushImage(registry.url, 'bench/small', 'v1', smallImg);
    const big = `${registry.host}/bench/big:v1`;
    const small = `${registry.host}/bench/small:v1`;
    const smallSize = smallImg.layers.reduce((s, l) => s + l.size, 0);
    console.log(`big image ${big}: ${img.layers.length} layers, ${(compressed / 1e6).toFixed(1)} MB compressed, ${img.entries} tar entries`);
    console.log(`small image ${small}: ${smallImg.layers.length} layer, ${(smallSize / 1e6).toFixed(2)} MB compressed`);
    const results: Record<string, RunResult[]> = { berth: [], containerd: [] };
    const floors: FloorResult[] = [];
    for (let run = 1; run <= RUNS; run++) {
      for (const rt of run % 2 === 1 ? [containerd, berth] : [berth, containerd]) {
        const r = await oneRun(rt, small, big, run === 1 && !COLD_ONLY);
        results[rt.name]?.push(r);
        console.log(
          `run ${run} ${rt.name.padEnd(10)} idle ${r.idleMiB.toFixed(0)} MiB, ` +
            (COLD_ONLY ? '' : `Version ${r.versionMs.toFixed(3)} ms, ListImages ${r.listMs.toFixed(3)} ms, small pull ${r.smallPullMs.toFixed(1)} ms, RemoveImage ${r.removeMs.toFixed(1)} ms, `) +
            `cold pull ${r.coldPullS.toFixed(2)} s (${r.coldCpuS.toFixed(2)} CPU-s), ` +
            `peak ${r.peakMiB.toFixed(0)} MiB${r.afterMiB === undefined ? '' : `, ${SETTLE_S} s later ${r.afterMiB.toFixed(0)} MiB`}, load ${loadAverage()}`,
        );
      }
      const f = await floorPull({ registryUrl: registry.url, repo: 'bench/big', layers: img.layers }, dropCaches);
      floors.push(f);
      console.log(`run ${run} ${'node floor'.padEnd(10)} cold pull ${f.seconds.toFixed(2)} s (${f.cpuSeconds.toFixed(2)} CPU-s, ${f.entries} entries), load ${loadAverage()}`);
    }
    const b = results.berth ?? [];
    const c = results.containerd ?? [];
    const med = (rs: RunResult[], f: (r: RunResult) => number | undefined): number => median(rs.map(f).filter((x): x is number => x !== undefined));
    console.log(`\nmedians over ${RUNS} runs (each run: fresh root; ${CALLS} calls per loop; ${SMALL_PULLS} small pulls)`);
    console.log(`${''.padEnd(34)} ${'berth'.padStart(11)} ${'containerd'.padStart(11)}   ratio`);
    print(row('idle RSS after start', med(b, (r) => r.idleMiB), med(c, (r) => r.idleMiB), 'MiB', 0, 'berth <= 80 MB'));
    print(row('peak RSS up to end of cold pull', Math.max(...b.map((r) => r.peakMiB)), Math.max(...c.map((r) => r.peakMiB)), 'MiB', 0, 'berth <= 160 MB'));
    const after = med(b, (r) => r.afterMiB);
    print(row(`RSS ${SETTLE_S} s after the cold pull`, after, med(c, (r) => r.afterMiB), 'MiB', 0, `berth <= 1.2x its idle = ${(1.2 * med(b, (r) => r.idleMiB)).toFixed(0)}`));
    print(row('Version p50 (per-call floor)', med(b, (r) => r.versionMs), med(c, (r) => r.versionMs), 'ms', 3, '<= 2x'));
    print(row('ListImages p50', med(b, (r) => r.listMs), med(c, (r) => r.listMs), 'ms', 3));
    print(row('small-image PullImage p50', med(b, (r) => r.smallPullMs), med(c, (r) => r.smallPullMs), 'ms', 1, '<= 1x'));
    print(row('RemoveImage p50', med(b, (r) => r.removeMs), med(c, (r) => r.removeMs), 'ms', 1, '<= 1x'));
    print(row('cold pull of the big image', med(b, (r) => r.coldPullS), med(c, (r) => r.coldPullS), 's', 2, '<= 0.6x'));
    print(row('  CPU-s of the cold pull', med(b, (r) => r.coldCpuS), med(c, (r) => r.coldCpuS), 's', 2));
    const floorS = median(floors.map((f) => f.seconds));
    print(row('  the Node floor (pull-floor.ts)', floorS, med(c, (r) => r.coldPullS), 's', 2));
    console.log(`  berth's cold pull is ${(med(b, (r) => r.coldPullS) / floorS).toFixed(2)}x the floor (medians; CPU-s of the floor ${median(floors.map((f) => f.cpuSeconds)).toFixed(2)})`);
    const split = (rs: RunResult[], f: (r: RunResult) => [number, number] | undefined): string => {
      const s = rs.map(f).find((x) => x !== undefined);
      return s ? `${s[0].toFixed(0)} + ${s[1].toFixed(0)}` : '-';
    };
    console.log(
      `RSS as anonymous + file-backed MiB (run 1; file-backed is mostly the runtime binary's pages, shared with other processes): ` +
        `berth idle ${split(b, (r) => r.idleSplit)}, after ${split(b, (r) => r.afterSplit)}; containerd idle ${split(c, (r) => r.idleSplit)}, after ${split(c, (r) => r.afterSplit)}`,
    );
  } finally {
    await img.cleanup();
    await registry.stop();
  }
}

await main();
