// berth-controller benchmark (hack/bench-controller.sh): prints figures, asserts nothing.
//  1. memory: a bare Node, client-node imported whole and by its config module, and idle node
//     agents run from the sources, from the bundle, and from a bundle without stubs;
//  2. 20 images on 3 nodes: how soon each BerthNode shows all Present after that node's last
//     pull, how soon the ImagePrefetch is Ready after the last node, and the writes it took;
//  3. idle: watch restarts per resource over a quiet window with production timings.
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { FakeApiServer } from '../helpers/fake-apiserver.ts';
import { startRegistry } from '../helpers/registry.ts';
import { startDaemon, type TestDaemon } from '../helpers/daemon.ts';
import { busyboxImage, pushImage } from '../helpers/images.ts';
import { metric, startController, waitFor, CONTROLLER, type RunningController } from '../helpers/controller.ts';
import { bundle, DEFAULT_OUT } from '../../hack/bundle-controller.ts';
import type { BerthNode, ImagePrefetch } from '../../src/controller/api.ts';

const { values } = parseArgs({ options: { images: { type: 'string', default: '20' }, idle: { type: 'string', default: '30' }, 'semi-space-mb': { type: 'string' } } });
const IMAGES = Number(values.images);
const IDLE_S = Number(values.idle);

async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Math.round(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024);
}

function nodeRss(code: string): number {
  return Number(execFileSync(process.execPath, ['--input-type=module', '-e', `${code}; console.log(Math.round(process.memoryUsage().rss / 1048576))`]).toString().trim());
}

const log = (s: string): void => void process.stdout.write(`${s}\n`);

const api = await FakeApiServer.start({ bookmarkMs: 60_000 });
const registry = await startRegistry();
const daemons: TestDaemon[] = [];
const ctls: RunningController[] = [];
try {
  log('== memory (RSS, MB)');
  log(`bare node                               ${nodeRss('')}`);
  log(`import @kubernetes/client-node          ${nodeRss("await import('@kubernetes/client-node')")}`);
  log(`import client-node dist/config.js       ${nodeRss("await import('@kubernetes/client-node/dist/config.js')")}`);
  const stubbed = await bundle(DEFAULT_OUT, true);
  const plainOut = DEFAULT_OUT.replace(/\.js$/, '.nostubs.js');
  const plain = await bundle(plainOut, false);
  log(`bundle sizes: with stubs ${Math.round(stubbed / 1024)} KiB, without ${Math.round(plain / 1024)} KiB`);

  const refs: string[] = [];
  for (let i = 0; i < IMAGES; i++) {
    const img = await busyboxImage({ config: { Env: [`BENCH=${i}`] } });
    await pushImage(registry.url, `bench/img${i}`, 'v1', img);
    refs.push(`${registry.host}/bench/img${i}:v1`);
  }
  const nodes = ['bench-a', 'bench-b', 'bench-c'];
  const entries = [CONTROLLER, DEFAULT_OUT, plainOut];
  for (const [i, name] of nodes.entries()) {
    const d = await startDaemon({});
    daemons.push(d);
    api.apply({ apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { bench: 'yes' } }, spec: {}, status: { nodeInfo: { containerRuntimeVersion: 'berth://0.1.0' } } });
    // Production timings (no test shortcuts), except a 1 s runtime poll so start-up is quick.
    ctls.push(await startController(api, api.nodeToken(name), ['--role', 'node-agent', '--node-name', name, '--socket', d.socket, '--log-level', 'info', '--runtime-poll-ms', '1000'], { entry: entries[i], timing: [] }));
  }
  const agg = await startController(api, api.serviceAccountToken('berth-aggregator'), ['--role', 'aggregator', '--log-level', 'info'], { timing: [] });
  ctls.push(agg);
  await waitFor(() => nodes.every((n) => api.get<BerthNode>('berthnodes', n)?.status?.runtimeReady), 30_000, 'agents up');
  await sleep(3000);
  const labels = ['agent from sources (type stripping)', 'agent from bundle (stubs)', 'agent from bundle (no stubs)'];
  for (const [i, c] of ctls.slice(0, 3).entries()) log(`${labels[i]?.padEnd(40)}${await rssMb(c.child.pid as number)}`);
  log(`aggregator from sources                 ${await rssMb(agg.child.pid as number)}`);

  log(`\n== ${IMAGES} images on ${nodes.length} nodes`);
  const t0 = Date.now();
  api.apply({ apiVersion: 'berth.io/v1alpha1', kind: 'ImagePrefetch', metadata: { name: 'bench', namespace: 'default' }, spec: { images: refs, nodeSelector: { bench: 'yes' }, maxConcurrentPulls: 4 } });
  await waitFor(() => api.get<ImagePrefetch>('imageprefetches', 'bench', 'default')?.status?.ready === nodes.length, 300_000, 'Ready on every node');
  const readyAt = api.writeLog.find((w) => w.resource === 'imageprefetches/status' && (w.object.status as { ready?: number })?.ready === nodes.length)?.at ?? Date.now();
  let lastNodeAt = 0;
  for (const [i, name] of nodes.entries()) {
    const pulledTimes = (daemons[i] as TestDaemon).logs().split('\n').filter((l) => l.includes('"msg":"pulled"')).map((l) => (JSON.parse(l) as { time: number }).time);
    const lastPull = Math.max(...pulledTimes);
    const writes = api.writeLog.filter((w) => w.resource === 'berthnodes/status' && w.name === name);
    const allPresent = writes.find((w) => ((w.object.status as BerthNode['status'])?.prefetches?.[0]?.images ?? []).filter((x) => x.state === 'Present').length === IMAGES);
    lastNodeAt = Math.max(lastNodeAt, allPresent?.at ?? 0);
    log(`${name}: last PullImage ${lastPull - t0} ms after create; all Present written ${(allPresent?.at ?? NaN) - lastPull} ms after it; ${writes.length} status writes for ${IMAGES * 2} image state changes`);
  }
  const aggWrites = api.writeLog.filter((w) => w.resource === 'imageprefetches/status');
  const span = (aggWrites.at(-1)?.at ?? 0) - (aggWrites[0]?.at ?? 0);
  const gaps = aggWrites.slice(1).map((w, i) => w.at - (aggWrites[i]?.at ?? 0));
  log(`ImagePrefetch Ready ${readyAt - lastNodeAt} ms after the last node's all-Present; ${aggWrites.length} aggregator writes over ${span} ms, shortest gap ${gaps.length ? Math.min(...gaps) : '-'} ms`);

  log(`\n== idle ${IDLE_S} s with production watch timings`);
  for (const c of ctls) await c.stop();
  ctls.length = 0;
  const idleAgent = await startController(api, api.nodeToken('bench-a'), ['--role', 'node-agent', '--node-name', 'bench-a', '--socket', (daemons[0] as TestDaemon).socket, '--log-level', 'info'], { entry: DEFAULT_OUT, timing: [] });
  ctls.push(idleAgent);
  await sleep(2000);
  const before = await metric(idleAgent, 'berth_controller_watch_restarts_total');
  const rss0 = await rssMb(idleAgent.child.pid as number);
  await sleep(IDLE_S * 1000);
  log(`watch restarts in ${IDLE_S} s: ${(await metric(idleAgent, 'berth_controller_watch_restarts_total')) - before} (3 watches); RSS ${rss0} → ${await rssMb(idleAgent.child.pid as number)} MB`);

  log(`\n== soak: 10k watch events, 100 relists, 200 prefetch create/delete (agent from the bundle${values['semi-space-mb'] ? `, --max-semi-space-size=${values['semi-space-mb']}` : ''})`);
  for (const c of ctls) await c.stop();
  ctls.length = 0;
  // --semi-space-mb caps V8's young generation (the DaemonSet runs the agent with 1 MB).
  const nodeArgs = values['semi-space-mb'] ? [`--max-semi-space-size=${values['semi-space-mb']}`] : [];
  const soak = await startController(api, api.nodeToken('bench-a'), ['--role', 'node-agent', '--node-name', 'bench-a', '--socket', (daemons[0] as TestDaemon).socket, '--log-level', 'warn'], { entry: DEFAULT_OUT, nodeArgs });
  ctls.push(soak);
  const bn = (): BerthNode | undefined => api.get<BerthNode>('berthnodes', 'bench-a');
  await waitFor(() => bn()?.status?.prefetches?.length === 1, 60_000, 'soak agent settled');
  await sleep(3000);
  const soakRss0 = await rssMb(soak.child.pid as number);
  const heap0 = Math.round((await metric(soak, 'nodejs_heap_used_bytes')) / 1048576);
  const other = { apiVersion: 'berth.io/v1alpha1', kind: 'ImagePrefetch', metadata: { name: 'elsewhere', namespace: 'default' } };
  for (let i = 0; i < 10_000; i++) {
    api.apply({ ...other, spec: { images: [refs[i % IMAGES] as string], nodeSelector: { bench: `no-${i}` } } });
    if (i % 500 === 0) await sleep(20); // let the streams drain
  }
  api.remove('imageprefetches', 'elsewhere', 'default');
  for (let i = 0; i < 100; i++) {
    const before = await metric(soak, 'berth_controller_relists_total');
    api.expireWatches();
    await waitFor(async () => (await metric(soak, 'berth_controller_relists_total')) >= before + 3, 30_000, `relist ${i}`);
  }
  for (let i = 0; i < 200; i++) {
    const name = `churn-${i}`;
    api.apply({ apiVersion: 'berth.io/v1alpha1', kind: 'ImagePrefetch', metadata: { name, namespace: 'default' }, spec: { images: [refs[i % IMAGES] as string], nodeSelector: { bench: 'yes' } } });
    await waitFor(() => bn()?.status?.prefetches?.some((p) => p.name === name && p.images.every((x) => x.state === 'Present')), 30_000, `${name} present`);
    api.remove('imageprefetches', name, 'default');
    await waitFor(() => !bn()?.status?.prefetches?.some((p) => p.name === name), 30_000, `${name} gone`);
  }
  await sleep(5000);
  log(`agent RSS ${soakRss0} MB before, ${await rssMb(soak.child.pid as number)} MB after; JS heap used ${heap0} → ${Math.round((await metric(soak, 'nodejs_heap_used_bytes')) / 1048576)} MB`);
} finally {
  for (const c of ctls) await c.stop();
  for (const d of daemons) await d.dispose();
  await registry.stop();
  await api.close();
}
