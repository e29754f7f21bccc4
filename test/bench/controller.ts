// berth-controller benchmark (hack/bench-controller.sh): prints figures, asserts nothing.
//  1. memory: a bare Node, client-node imported whole and by its config module, and idle node
//     agents run from the sources, from the bundle, and from a bundle without stubs;
//  2. 20 images on 3 nodes: how soon each BerthNode shows all Present after that node's last
//     pull, how soon the ImagePrefetch is Ready after the last node, and the writes it took;
//  3. idle: watch restarts per resource over 5 quiet minutes compressed into --idle seconds (every
//     watch timing, the bookmark period included, divided by the same factor);
//  4. soak: the agent's RSS and JS heap before and after 10k watch events, 100 relists and 200
//     prefetch create/delete.
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
import { AGENT_NODE_FLAGS } from '../../hack/render-manifests.ts';
import type { BerthNode, ImagePrefetch } from '../../src/controller/api.ts';

// --soak-flags (repeatable): Node flags of one soak run each; default the DaemonSet's agent flags and
// the young-generation cap alone (what the DaemonSet ran before), compared in the same run.
const { values } = parseArgs({ options: { images: { type: 'string', default: '20' }, idle: { type: 'string', default: '30' }, 'soak-flags': { type: 'string', multiple: true } } });
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

/** One soak of a fresh node agent for bench-a run with `nodeArgs`: [before, after] in MB. */
type Pair = [number, number];
async function soak(nodeArgs: string[]): Promise<{ rss: Pair; heapUsed: Pair; heapTotal: Pair }> {
  const agent = await startController(api, api.nodeToken('bench-a'), ['--role', 'node-agent', '--node-name', 'bench-a', '--socket', (daemons[0] as TestDaemon).socket, '--log-level', 'warn'], { entry: DEFAULT_OUT, nodeArgs });
  ctls.push(agent);
  const mb = async (name: string): Promise<number> => Math.round((await metric(agent, name)) / 1048576);
  const sample = async (): Promise<number[]> => [await rssMb(agent.child.pid as number), await mb('nodejs_heap_used_bytes'), await mb('nodejs_heap_total_bytes')];
  const bn = (): BerthNode | undefined => api.get<BerthNode>('berthnodes', 'bench-a');
  await waitFor(() => bn()?.status?.prefetches?.length === 1, 60_000, 'soak agent settled');
  await sleep(3000);
  const s0 = await sample();
  const other = { apiVersion: 'berth.io/v1alpha1', kind: 'ImagePrefetch', metadata: { name: 'elsewhere', namespace: 'default' } };
  for (let i = 0; i < 10_000; i++) {
    api.apply({ ...other, spec: { images: [refs[i % IMAGES] as string], nodeSelector: { bench: `no-${i}` } } });
    if (i % 500 === 0) await sleep(20); // let the streams drain
  }
  api.remove('imageprefetches', 'elsewhere', 'default');
  for (let i = 0; i < 100; i++) {
    const before = await metric(agent, 'berth_controller_relists_total');
    api.expireWatches();
    await waitFor(async () => (await metric(agent, 'berth_controller_relists_total')) >= before + 3, 30_000, `relist ${i}`);
  }
  for (let i = 0; i < 200; i++) {
    const name = `churn-${i}`;
    api.apply({ apiVersion: 'berth.io/v1alpha1', kind: 'ImagePrefetch', metadata: { name, namespace: 'default' }, spec: { images: [refs[i % IMAGES] as string], nodeSelector: { bench: 'yes' } } });
    await waitFor(() => bn()?.status?.prefetches?.some((p) => p.name === name && p.images.every((x) => x.state === 'Present')), 30_000, `${name} present`);
    api.remove('imageprefetches', name, 'default');
    await waitFor(() => !bn()?.status?.prefetches?.some((p) => p.name === name), 30_000, `${name} gone`);
  }
  await sleep(5000);
  const s1 = await sample();
  await agent.stop();
  ctls.splice(ctls.indexOf(agent), 1);
  return { rss: [s0[0] ?? 0, s1[0] ?? 0], heapUsed: [s0[1] ?? 0, s1[1] ?? 0], heapTotal: [s0[2] ?? 0, s1[2] ?? 0] };
}

const api = await FakeApiServer.start({ bookmarkMs: 60_000 });
const registry = await startRegistry();
const daemons: TestDaemon[] = [];
const ctls: RunningController[] = [];
const refs: string[] = [];
try {
  log('== memory (RSS, MB)');
  log(`bare node                               ${nodeRss('')}`);
  log(`import @kubernetes/client-node          ${nodeRss("await import('@kubernetes/client-node')")}`);
  log(`import client-node dist/config.js       ${nodeRss("await import('@kubernetes/client-node/dist/config.js')")}`);
  const stubbed = await bundle(DEFAULT_OUT, true);
  const plainOut = DEFAULT_OUT.replace(/\.js$/, '.nostubs.js');
  const plain = await bundle(plainOut, false);
  log(`bundle sizes: with stubs ${Math.round(stubbed / 1024)} KiB, without ${Math.round(plain / 1024)} KiB`);

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

  // 5 min of production watch timings (server timeouts 300-600 s, idle timeout 150 s, a bookmark a
  // minute) played k times faster, on an API server of its own with the scaled bookmark period.
  const k = 300 / IDLE_S;
  log(`\n== idle: 5 min compressed into ${IDLE_S} s (watch timeouts, idle timeout and bookmark period ÷ ${k})`);
  for (const c of ctls) await c.stop();
  ctls.length = 0;
  const idleApi = await FakeApiServer.start({ bookmarkMs: Math.round(60_000 / k) });
  try {
    idleApi.apply({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'bench-a', labels: { bench: 'yes' } }, spec: {}, status: { nodeInfo: { containerRuntimeVersion: 'berth://0.1.0' } } });
    const scaled = ['--watch-timeout', `${300 / k}-${600 / k}`, '--idle-timeout-ms', String(Math.round(150_000 / k))];
    const idleAgent = await startController(idleApi, idleApi.nodeToken('bench-a'), ['--role', 'node-agent', '--node-name', 'bench-a', '--socket', (daemons[0] as TestDaemon).socket, '--log-level', 'info', ...scaled], { entry: DEFAULT_OUT, timing: [], nodeArgs: AGENT_NODE_FLAGS });
    ctls.push(idleAgent);
    await waitFor(() => idleApi.get<BerthNode>('berthnodes', 'bench-a')?.status?.runtimeReady, 30_000, 'idle agent up');
    const resources = ['nodes', 'imageprefetches', 'runtimeclasses'];
    const restarts = async (): Promise<number[]> => Promise.all(resources.map((r) => metric(idleAgent, 'berth_controller_watch_restarts_total', `resource="${r}"`)));
    const before = await restarts();
    const rss0 = await rssMb(idleAgent.child.pid as number);
    await sleep(IDLE_S * 1000);
    const after = await restarts();
    log(`watch restarts per resource in 5 scaled minutes: ${resources.map((r, i) => `${r} ${(after[i] ?? 0) - (before[i] ?? 0)}`).join(', ')}; agent (bundle, the DaemonSet's node flags) RSS ${rss0} → ${await rssMb(idleAgent.child.pid as number)} MB`);
    await idleAgent.stop();
    ctls.length = 0;
  } finally {
    await idleApi.close();
  }

  for (const flags of values['soak-flags'] ?? [AGENT_NODE_FLAGS.join(' '), '--max-semi-space-size=1']) {
    const nodeArgs = flags.split(' ').filter(Boolean);
    log(`\n== soak: 10k watch events, 100 relists, 200 prefetch create/delete (agent from the bundle, node ${nodeArgs.join(' ') || 'defaults'}${flags === AGENT_NODE_FLAGS.join(' ') ? ': the DaemonSet\'s' : ''})`);
    const r = await soak(nodeArgs);
    log(`agent RSS ${r.rss[0]} MB before, ${r.rss[1]} MB after (${r.rss[1] - r.rss[0] >= 0 ? '+' : ''}${r.rss[1] - r.rss[0]}); JS heap used ${r.heapUsed[0]} → ${r.heapUsed[1]} MB, V8 heap total ${r.heapTotal[0]} → ${r.heapTotal[1]} MB`);
  }
} finally {
  for (const c of ctls) await c.stop();
  for (const d of daemons) await d.dispose();
  await registry.stop();
  await api.close();
}
