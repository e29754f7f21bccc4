// The list/watch cache against the fake API server: it lists in pages, and a server that fails
// every request gets a bounded trickle of retries (capped exponential backoff with full jitter),
// never a storm; when it recovers, the cache catches up.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { setTimeout as sleep } from 'node:timers/promises';
import { FakeApiServer } from '../helpers/fake-apiserver.ts';
import { waitFor } from '../helpers/controller.ts';
import { Informer } from '../../src/controller/informer.ts';
import { Kube } from '../../src/controller/kube.ts';
import { Metrics } from '../../src/controller/metrics.ts';

const AGENT = 'system:serviceaccount:berth-system:berth-node';
let api: FakeApiServer;
let kube: Kube;
const metrics = new Metrics();
before(async () => {
  api = await FakeApiServer.start({ bookmarkMs: 200 });
  // Faults hit every user but the admin: read as the node agent (RBAC lets it list/watch nodes).
  kube = new Kube({ kubeconfig: await api.kubeconfig(api.nodeToken('n1')), metrics });
});
after(async () => {
  kube?.close();
  await api?.close();
});

test('pages, then a failing server gets few retries; recovery catches up', async () => {
  for (let i = 0; i < 7; i++) api.apply({ apiVersion: 'v1', kind: 'Node', metadata: { name: `n${i}` }, spec: {} });
  const informer = new Informer(kube, {
    path: '/api/v1/nodes',
    name: 'nodes',
    timing: { watchTimeoutSeconds: { min: 5, max: 5 }, idleTimeoutMs: 2000, relistJitterMs: 50, backoff: { initialMs: 100, maxMs: 400 }, pageSize: 3 },
    log: pino({ level: process.env.DEBUG_INFORMER ? 'debug' : 'silent' }),
    metrics,
    onChange: () => undefined,
  });
  const ac = new AbortController();
  const running = informer.run(ac.signal);
  try {
    await waitFor(() => informer.store.size === 7, 5000, 'first list');
    const before = api.requests.get(AGENT) ?? 0;
    api.failNext(1_000_000, 500);
    api.dropWatches();
    await sleep(2000);
    const during = (api.requests.get(AGENT) ?? 0) - before;
    // Delays are uniform in [0, min(400, 100·2^n)] ms: about 10 in 2 s; a storm would be thousands.
    assert.ok(during >= 3 && during <= 40, `${during} requests in 2 s of failures`);
    // Deleted and added while the server failed: the relist after recovery catches both.
    api.remove('nodes', 'n0');
    api.apply({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n7' }, spec: {} });
    api.clearFaults();
    await waitFor(() => informer.store.has('n7') && !informer.store.has('n0'), 5000, 'caught up');
    assert.equal(informer.store.size, 7);
  } finally {
    ac.abort();
    await running;
  }
});

test('the answer to our own write is taken only over the version it was based on: a late one neither rolls back a newer watched version nor brings back a deleted object', async () => {
  type Node = { metadata: { name: string; resourceVersion?: string; labels?: Record<string, string> } };
  api.apply({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' }, spec: {} });
  const informer = new Informer<Node & { metadata: { name: string } }>(kube, {
    path: '/api/v1/nodes',
    name: 'nodes',
    timing: { watchTimeoutSeconds: { min: 5, max: 5 }, idleTimeoutMs: 2000, relistJitterMs: 50, backoff: { initialMs: 100, maxMs: 400 }, pageSize: 50 },
    log: pino({ level: 'silent' }),
    metrics,
    onChange: () => undefined,
  });
  const ac = new AbortController();
  const running = informer.run(ac.signal);
  const rv = (): string | undefined => informer.store.get('n1')?.metadata.resourceVersion;
  try {
    await waitFor(() => informer.store.has('n1'), 5000, 'listed');
    const based = rv();
    const answer = await kube.patch<Node>('/api/v1/nodes/n1', { metadata: { labels: { 'berth.io/runtime': 'ready' } } });
    // Someone else changes the node after our write; the watch delivers it before our answer lands.
    const newer = api.apply({ ...api.get('nodes', 'n1'), metadata: { ...api.get('nodes', 'n1')?.metadata, labels: { 'berth.io/runtime': 'ready', team: 'a' } } });
    await waitFor(() => rv() === newer.metadata.resourceVersion, 5000, 'newer version watched');
    informer.accept(answer, based);
    assert.equal(rv(), newer.metadata.resourceVersion, 'not rolled back');

    const next = await kube.patch<Node>('/api/v1/nodes/n1', { metadata: { labels: { 'berth.io/version': '1' } } });
    informer.accept(next, newer.metadata.resourceVersion);
    assert.equal(rv(), next.metadata.resourceVersion, 'taken over the version it was based on');

    api.remove('nodes', 'n1');
    await waitFor(() => !informer.store.has('n1'), 5000, 'deletion watched');
    informer.accept(next, newer.metadata.resourceVersion);
    assert.equal(informer.store.has('n1'), false, 'a deleted object stays deleted');
  } finally {
    ac.abort();
    await running;
  }
});
