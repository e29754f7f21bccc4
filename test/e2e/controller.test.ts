// berth-controller end to end: real berthds, real registries, the real node agents and aggregator
// (bin/berth-controller.js), and an HTTP-level fake API server that enforces the RBAC and the
// admission policy of the rendered manifests. Checks labels, the RuntimeClass check, prefetch
// pulls, pins, status summaries, secrets, registry failures and API faults.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FakeApiServer } from '../helpers/fake-apiserver.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { startDaemon, type TestDaemon } from '../helpers/daemon.ts';
import { busyboxImage, pushImage } from '../helpers/images.ts';
import { metric, startController, waitFor, type RunningController } from '../helpers/controller.ts';
import type { BerthNode, ImagePrefetch, NodeImageStatus } from '../../src/controller/api.ts';
import type { Image__Output as Image } from '../../src/cri/gen/runtime/v1/Image.ts';

type Obj = Record<string, unknown>;
const NS = 'team';
const POOL = 'pool.test/name';

function nodeObject(name: string, runtime: string, labels: Record<string, string> = {}): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, ...labels } },
    spec: {},
    status: { nodeInfo: { containerRuntimeVersion: runtime }, runtimeHandlers: [{ name: 'runc' }, { name: 'crun' }] },
  };
}

function prefetch(name: string, spec: Obj): Obj {
  return { apiVersion: 'berth.io/v1alpha1', kind: 'ImagePrefetch', metadata: { name, namespace: NS }, spec: { backoff: { initialSeconds: 1, maxSeconds: 4 }, ...spec } };
}

describe('berth-controller', () => {
  let api: FakeApiServer;
  let registry: TestRegistry;
  let privateRegistry: TestRegistry;
  const daemons = new Map<string, TestDaemon>();
  const agents = new Map<string, RunningController>();
  let aggregator: RunningController;
  let images: { one: string; two: string; twoDigest: string; secret: string };
  let flaky: { server: Server; healthy: boolean; hits: number; host: string };

  const labels = (node: string): Record<string, string> => (api.get<Obj>('nodes', node)?.metadata as { labels?: Record<string, string> }).labels ?? {};
  const berthNode = (node: string): BerthNode | undefined => api.get<BerthNode>('berthnodes', node);
  const entry = (node: string, name: string) => berthNode(node)?.status?.prefetches?.find((p) => p.name === name);
  const ipf = (name: string): ImagePrefetch | undefined => api.get<ImagePrefetch>('imageprefetches', name, NS);
  const imageStatus = async (node: string, ref: string): Promise<Image | null> =>
    (await (daemons.get(node) as TestDaemon).client.call<{ image: Image | null }>('image', 'ImageStatus', { image: { image: ref } })).image;
  const diagnostics = (): string =>
    `refusals: ${JSON.stringify(api.refusals.slice(-5))}\nberthnodes: ${JSON.stringify(api.list('berthnodes').map((b) => b.status))}\n` +
    [...agents].map(([n, a]) => `--- agent ${n}\n${a.logs().split('\n').slice(-15).join('\n')}`).join('\n') +
    `\n--- aggregator\n${aggregator?.logs().split('\n').slice(-10).join('\n')}`;
  const unexpected403 = () => api.refusals.filter((r) => r.code === 403 && !r.path.includes('/secrets/'));

  async function addNode(name: string, runtime = 'berth://0.1.0', extraLabels: Record<string, string> = {}): Promise<void> {
    const config = `[image]\npull_attempts = 1\n`;
    const d = await startDaemon({ config });
    daemons.set(name, d);
    api.apply(nodeObject(name, runtime, extraLabels));
    agents.set(name, await startController(api, api.nodeToken(name), ['--role', 'node-agent', '--node-name', name, '--socket', d.socket]));
  }

  before(async () => {
    api = await FakeApiServer.start({ bookmarkMs: 500 });
    [registry, privateRegistry] = await Promise.all([startRegistry(), startRegistry({ basicAuth: { user: 'puller', password: 'right' } })]);
    const one = await busyboxImage({ config: { Env: ['IMG=one'] } });
    const two = await busyboxImage({ config: { Env: ['IMG=two'] } });
    await pushImage(registry.url, 'app/one', 'v1', one);
    const twoDigest = await pushImage(registry.url, 'app/two', 'v1', two);
    const auth = `Basic ${Buffer.from('puller:right').toString('base64')}`;
    await pushImage(privateRegistry.url, 'private/img', 'v1', one, { authorization: auth });
    images = { one: `${registry.host}/app/one:v1`, two: `${registry.host}/app/two@${twoDigest}`, twoDigest, secret: `${privateRegistry.host}/private/img:v1` };
    // A registry that answers 500 until it is made healthy, then forwards to the real one.
    flaky = { server: undefined as unknown as Server, healthy: false, hits: 0, host: '' };
    flaky.server = createServer((req, res) => {
      flaky.hits++;
      if (!flaky.healthy) {
        res.writeHead(500).end('broken');
        return;
      }
      const up = request({ host: '127.0.0.1', port: registry.port, path: req.url, method: req.method, headers: { ...req.headers, host: registry.host } }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      req.pipe(up);
    });
    await new Promise<void>((resolve) => flaky.server.listen(0, '127.0.0.1', resolve));
    flaky.host = `127.0.0.1:${(flaky.server.address() as AddressInfo).port}`;
    api.apply({ apiVersion: 'node.k8s.io/v1', kind: 'RuntimeClass', metadata: { name: 'berth' }, handler: 'runc', scheduling: { nodeSelector: { 'berth.io/runtime': 'ready' } } });
    await addNode('node-a', 'berth://0.1.0', { [POOL]: 'p' });
    await addNode('node-b', 'containerd://1.6.20', { [POOL]: 'p' });
    aggregator = await startController(api, api.serviceAccountToken('berth-aggregator'), ['--role', 'aggregator']);
  });

  after(async () => {
    await Promise.allSettled([...agents.values()].map((a) => a.stop()));
    await aggregator?.stop();
    await Promise.allSettled([...daemons.values()].map((d) => d.dispose()));
    await registry?.stop();
    await privateRegistry?.stop();
    await new Promise<void>((resolve) => (flaky?.server ? flaky.server.close(() => resolve()) : resolve()));
    await api?.close();
  });

  test('labels: ready on a kubelet that runs on berth, installed otherwise, flipping when the kubelet switches', async () => {
    await waitFor(() => labels('node-a')['berth.io/runtime'] === 'ready', 15_000, 'node-a ready', diagnostics);
    assert.equal(labels('node-a')['berth.io/version'], '0.1.0');
    assert.equal(labels('node-a')['berth.io/handler.runc'], 'true');
    await waitFor(() => labels('node-b')['berth.io/runtime'] === 'installed', 15_000, 'node-b installed', diagnostics);
    // The kubelet of node-b switches to berth: the label follows.
    api.setStatus('nodes', 'node-b', { nodeInfo: { containerRuntimeVersion: 'berth://0.1.0' }, runtimeHandlers: [{ name: 'runc' }, { name: 'crun' }] });
    await waitFor(() => labels('node-b')['berth.io/runtime'] === 'ready', 15_000, 'node-b ready', diagnostics);
    // Labels the agent does not own are untouched.
    assert.equal(labels('node-a')[POOL], 'p');
    const bn = await waitFor(() => (berthNode('node-a')?.status?.runtimeReady === true ? berthNode('node-a') : undefined), 15_000, 'BerthNode node-a', diagnostics);
    assert.deepEqual((bn.metadata.ownerReferences ?? []).map((o) => [o.kind, o.name]), [['Node', 'node-a']]);
    assert.deepEqual(unexpected403(), []);
  });

  test('an agent without berthd labels its node not-ready', async () => {
    api.apply(nodeObject('node-d', 'berth://0.1.0'));
    const agent = await startController(api, api.nodeToken('node-d'), ['--role', 'node-agent', '--node-name', 'node-d', '--socket', '/nonexistent/berth.sock']);
    try {
      await waitFor(() => labels('node-d')['berth.io/runtime'] === 'not-ready', 15_000, 'node-d not-ready', () => agent.logs());
      assert.equal((await fetch(`${agent.healthUrl}/readyz`)).status, 503);
      assert.equal((await fetch(`${agent.healthUrl}/healthz`)).status, 200);
      const cond = await waitFor(() => berthNode('node-d')?.status?.conditions?.find((c) => c.type === 'RuntimeReady'), 15_000, 'RuntimeReady condition');
      assert.equal(cond.reason, 'BerthdUnreachable');
    } finally {
      await agent.stop();
      api.remove('nodes', 'node-d');
    }
    // The Node's deletion takes its BerthNode with it (owner reference).
    assert.equal(berthNode('node-d'), undefined);
    assert.deepEqual(unexpected403(), []);
  });

  test('a berth RuntimeClass naming a handler the node lacks raises a BerthNode condition', async () => {
    const cond = (): { status: string; message: string } | undefined => berthNode('node-a')?.status?.conditions?.find((c) => c.type === 'RuntimeClassesReady');
    await waitFor(() => cond()?.status === 'True', 15_000, 'RuntimeClassesReady True', diagnostics);
    api.apply({ apiVersion: 'node.k8s.io/v1', kind: 'RuntimeClass', metadata: { name: 'berth-kata' }, handler: 'kata', scheduling: { nodeSelector: { 'berth.io/runtime': 'ready' } } });
    // Not berth's: no berth.io/runtime in its selector, so its handler is none of our business.
    api.apply({ apiVersion: 'node.k8s.io/v1', kind: 'RuntimeClass', metadata: { name: 'gvisor' }, handler: 'runsc' });
    const bad = await waitFor(() => (cond()?.status === 'False' ? cond() : undefined), 15_000, 'RuntimeClassesReady False', diagnostics);
    assert.match(bad.message, /RuntimeClass berth-kata wants handler kata, which berthd does not offer/);
    assert.doesNotMatch(bad.message, /gvisor|RuntimeClass berth wants/);
    // A handler berthd has but the kubelet does not list.
    api.remove('runtimeclasses', 'berth-kata');
    api.setStatus('nodes', 'node-a', { nodeInfo: { containerRuntimeVersion: 'berth://0.1.0' }, runtimeHandlers: [{ name: 'crun' }] });
    const kubelet = await waitFor(() => (cond()?.message.includes('kubelet') ? cond() : undefined), 15_000, 'kubelet handler mismatch', diagnostics);
    assert.match(kubelet.message, /RuntimeClass berth wants handler runc, which the kubelet does not list/);
    api.setStatus('nodes', 'node-a', { nodeInfo: { containerRuntimeVersion: 'berth://0.1.0' }, runtimeHandlers: [{ name: 'runc' }, { name: 'crun' }] });
    api.remove('runtimeclasses', 'gvisor');
    await waitFor(() => cond()?.status === 'True', 15_000, 'RuntimeClassesReady True again', diagnostics);
    assert.deepEqual(unexpected403(), []);
  });

  test('a prefetch pulls on matching nodes, pins, reports per node and in summary; a late node joins', async () => {
    api.apply(prefetch('base', { images: [images.one, images.two], nodeSelector: { [POOL]: 'p' } }));
    for (const node of ['node-a', 'node-b']) {
      const e = await waitFor(() => (entry(node, 'base')?.images.every((i) => i.state === 'Present') ? entry(node, 'base') : undefined), 30_000, `${node} Present`, diagnostics);
      assert.equal(e.images.length, 2);
      assert.equal(e.observedGeneration, 1);
      assert.equal(e.images.find((i) => i.image === images.two)?.digest, images.twoDigest);
      assert.match(e.images.find((i) => i.image === images.one)?.digest ?? '', /^sha256:[a-f0-9]{64}$/);
      await waitFor(async () => (await imageStatus(node, images.one))?.pinned === true && (await imageStatus(node, images.two))?.pinned === true, 15_000, `${node} pins`, diagnostics);
    }
    let st = await waitFor(() => (ipf('base')?.status?.ready === 2 ? ipf('base')?.status : undefined), 15_000, 'aggregated ready 2', diagnostics);
    assert.equal(st.matched, 2);
    assert.equal(st.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
    assert.equal(st.conditions?.find((c) => c.type === 'Progressing')?.status, 'False');
    // A node that joins later picks the existing prefetch up.
    await addNode('node-c', 'berth://0.1.0', { [POOL]: 'p' });
    await waitFor(() => entry('node-c', 'base')?.images.every((i) => i.state === 'Present'), 30_000, 'node-c Present', diagnostics);
    st = await waitFor(() => (ipf('base')?.status?.ready === 3 ? ipf('base')?.status : undefined), 15_000, 'aggregated ready 3', diagnostics);
    assert.equal(st.matched, 3);
    // A present image is not pulled again when the prefetch changes: adding an image pulls only it.
    const pulls = (node: string): number => ((daemons.get(node) as TestDaemon).logs().match(/"msg":"pulled"/g) ?? []).length;
    const before = pulls('node-a');
    api.apply(prefetch('base', { images: [images.one, images.two, images.secret.replace(privateRegistry.host, registry.host).replace('private/img', 'app/one')], nodeSelector: { [POOL]: 'p' } }));
    await waitFor(() => entry('node-a', 'base')?.observedGeneration === 2 && entry('node-a', 'base')?.images.every((i) => i.state === 'Present'), 30_000, 'generation 2 Present', diagnostics);
    assert.equal(pulls('node-a'), before, 'an image already present (same repo and tag) is not pulled');
    assert.deepEqual(unexpected403(), []);
  });

  test('a node that stops matching drops the prefetch and unpins its images, which stay present', async () => {
    await waitFor(() => entry('node-b', 'base'), 30_000, 'node-b has base', diagnostics);
    api.apply(nodeObject('node-b', 'berth://0.1.0', { ...labels('node-b'), [POOL]: 'other' }));
    await waitFor(() => berthNode('node-b') && !entry('node-b', 'base'), 15_000, 'node-b entry gone', diagnostics);
    await waitFor(async () => (await imageStatus('node-b', images.one))?.pinned === false, 15_000, 'node-b unpinned', diagnostics);
    assert.ok(await imageStatus('node-b', images.one), 'unpinning keeps the image');
    await waitFor(() => ipf('base')?.status?.matched === 2, 15_000, 'matched 2', diagnostics);
    // Deleting the prefetch unpins everywhere; no finalizer holds it.
    api.remove('imageprefetches', 'base', NS);
    for (const node of ['node-a', 'node-c']) {
      await waitFor(async () => (await imageStatus(node, images.two))?.pinned === false && !entry(node, 'base'), 15_000, `${node} unpinned`, diagnostics);
    }
    api.apply(nodeObject('node-b', 'berth://0.1.0', { ...labels('node-b'), [POOL]: 'p' }));
    assert.deepEqual(unexpected403(), []);
  });

  test('an empty selector selects every node; a selector matching none settles instead of hanging', async () => {
    api.apply(prefetch('everywhere', { images: [images.one], pin: false }));
    api.apply(prefetch('nowhere', { images: [images.one], nodeSelector: { [POOL]: 'no-such-pool' } }));
    await waitFor(() => ipf('everywhere')?.status?.ready === 3, 30_000, 'everywhere ready on 3', diagnostics);
    assert.equal((await imageStatus('node-a', images.one))?.pinned, false, 'pin: false pins nothing');
    const none = await waitFor(() => ipf('nowhere')?.status?.conditions, 15_000, 'nowhere has a status', diagnostics);
    assert.equal(ipf('nowhere')?.status?.matched, 0);
    assert.deepEqual(none.map((c) => [c.type, c.status, c.reason]), [['Degraded', 'False', 'NoFailures'], ['Progressing', 'False', 'Settled'], ['Ready', 'False', 'NoMatchingNodes']]);
    api.remove('imageprefetches', 'everywhere', NS);
    api.remove('imageprefetches', 'nowhere', NS);
    assert.deepEqual(unexpected403(), []);
  });

  test('pull secrets: forbidden, missing, wrong password, then right: read fresh at every attempt', async () => {
    const state = (): NodeImageStatus | undefined => entry('node-a', 'private')?.images[0];
    const secret = (password: string): Obj => ({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'regcred', namespace: NS },
      type: 'kubernetes.io/dockerconfigjson',
      data: { '.dockerconfigjson': Buffer.from(JSON.stringify({ auths: { [`http://${privateRegistry.host}`]: { auth: Buffer.from(`puller:${password}`).toString('base64') } } })).toString('base64') },
    });
    api.apply(prefetch('private', { images: [images.secret], nodeSelector: { 'kubernetes.io/hostname': 'node-a' }, pullSecrets: [{ name: 'regcred' }] }));
    // Authorization comes before existence, as in a real apiserver: without the binding, 403.
    await waitFor(() => state()?.reason === 'PullSecretForbidden', 15_000, 'PullSecretForbidden', diagnostics);
    assert.match(state()?.lastError ?? '', /bind ClusterRole berth-pull-secret-reader in team/);
    api.apply({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'berth-pull-secrets', namespace: NS },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'berth-pull-secret-reader' },
      subjects: [{ kind: 'ServiceAccount', name: 'berth-node', namespace: 'berth-system' }],
    });
    await waitFor(() => state()?.reason === 'PullSecretNotFound', 15_000, 'PullSecretNotFound', diagnostics);
    api.apply(secret('wrong'));
    await waitFor(() => state()?.reason === 'Unauthorized', 15_000, 'Unauthorized', diagnostics);
    const failed = state() as NodeImageStatus;
    assert.equal(failed.state, 'Failed');
    assert.ok(failed.attempts >= 3 && failed.nextRetryAt, JSON.stringify(failed));
    api.apply(secret('right'));
    await waitFor(() => state()?.state === 'Present', 15_000, 'Present with the right password', diagnostics);
    await waitFor(() => ipf('private')?.status?.ready === 1, 15_000, 'private ready', diagnostics);
    api.remove('imageprefetches', 'private', NS);
    assert.deepEqual(unexpected403(), []);
  });

  test('a tag is checked again every refreshSeconds and pulled when its digest moved; a digest never', async () => {
    await pushImage(registry.url, 'app/moving', 'v1', await busyboxImage({ config: { Env: ['GEN=1'] } }));
    const moving = `${registry.host}/app/moving:v1`;
    // refreshSeconds 10 × the agents' --time-scale 0.1: a check every second.
    api.apply(prefetch('moving', { images: [moving, images.two], nodeSelector: { 'kubernetes.io/hostname': 'node-a' }, refreshSeconds: 10 }));
    const img = (ref: string): NodeImageStatus | undefined => entry('node-a', 'moving')?.images.find((i) => i.image === ref);
    const first = await waitFor(() => (img(moving)?.state === 'Present' ? img(moving)?.digest : undefined), 30_000, 'moving Present', diagnostics);
    const pulls = (): string[] => (daemons.get('node-a') as TestDaemon).logs().split('\n').filter((l) => l.includes('"msg":"pulled"') && l.includes('app/two'));
    const twoPulls = pulls().length;
    const moved = await pushImage(registry.url, 'app/moving', 'v1', await busyboxImage({ config: { Env: ['GEN=2'] } }));
    assert.notEqual(moved, first);
    await waitFor(() => img(moving)?.digest === moved, 30_000, 'digest follows the moved tag', diagnostics);
    assert.equal(img(moving)?.state, 'Present', 'a refresh never leaves Present');
    assert.equal((await imageStatus('node-a', moving))?.repo_digests.some((d) => d.endsWith(moved)), true);
    assert.equal(pulls().length, twoPulls, 'a digest reference is never pulled again');
    api.remove('imageprefetches', 'moving', NS);
    assert.deepEqual(unexpected403(), []);
  });

  test('a registry answering 500 is retried with growing delays until it recovers', async () => {
    const image = `${flaky.host}/app/one:v1`;
    api.apply(prefetch('flaky', { images: [image], nodeSelector: { 'kubernetes.io/hostname': 'node-a' }, backoff: { initialSeconds: 2, maxSeconds: 8 } }));
    const state = (): NodeImageStatus | undefined => entry('node-a', 'flaky')?.images[0];
    const failed = await waitFor(() => ((state()?.attempts ?? 0) >= 3 && state()?.state === 'Failed' ? state() : undefined), 30_000, 'three failed attempts', diagnostics);
    const hits = flaky.hits;
    assert.equal(failed.reason, 'PullFailed');
    // With pull_attempts = 1 each attempt is one manifest request: no storm.
    assert.ok(hits <= failed.attempts * 2, `${hits} registry requests for ${failed.attempts} attempts`);
    flaky.healthy = true;
    await waitFor(() => state()?.state === 'Present', 30_000, 'Present after recovery', diagnostics);
    api.remove('imageprefetches', 'flaky', NS);
    assert.deepEqual(unexpected403(), []);
  });

  test('watch faults: 410 mid-stream and at start, dropped and stalled streams, 500s and 429s', async () => {
    const agent = agents.get('node-a') as RunningController;
    const relists = await metric(agent, 'berth_controller_relists_total');
    const flip = async (value: string): Promise<void> => {
      api.apply(prefetch('probe', { images: [images.one], pin: false, nodeSelector: { 'kubernetes.io/hostname': value } }));
      await waitFor(() => (value === 'node-a' ? entry('node-a', 'probe') : berthNode('node-a') && !entry('node-a', 'probe')), 20_000, `agent sees probe → ${value}`, diagnostics);
    };
    api.expireWatches(); // 410 mid-stream, and every known resourceVersion is now too old
    await flip('node-a');
    assert.ok((await metric(agent, 'berth_controller_relists_total')) > relists, 'a 410 leads to a relist');
    api.compact();
    api.dropWatches(); // the re-watch from the old resourceVersion starts with 410
    await flip('nobody');
    api.stalled = true; // streams stay open and say nothing, not even bookmarks
    await new Promise((resolve) => setTimeout(resolve, 3000)); // longer than the agents' idle timeout (2.5 s)
    api.stalled = false;
    await flip('node-a');
    assert.ok((await metric(agent, 'berth_controller_watch_restarts_total', 'why="error"')) > 0);
    api.failNext(6, 500);
    api.dropWatches();
    await flip('nobody');
    api.failNext(4, 429, 1);
    api.dropWatches();
    await flip('node-a');
    api.remove('imageprefetches', 'probe', NS);
    assert.deepEqual(unexpected403(), []);
  });

  test('an outage with a deletion inside: agents keep working, then relist and catch the deletion', async () => {
    api.apply(prefetch('gone', { images: [images.two], nodeSelector: { [POOL]: 'p' } }));
    for (const node of ['node-a', 'node-c']) await waitFor(async () => (await imageStatus(node, images.two))?.pinned === true, 30_000, `${node} pinned`, diagnostics);
    api.setOutage(true);
    api.remove('imageprefetches', 'gone', NS);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    // During the outage nothing changed on the nodes: pins stay as they were.
    assert.equal((await imageStatus('node-a', images.two))?.pinned, true);
    api.setOutage(false);
    for (const node of ['node-a', 'node-b', 'node-c']) {
      await waitFor(async () => (await imageStatus(node, images.two))?.pinned !== true && berthNode(node) && !entry(node, 'gone'), 30_000, `${node} saw the deletion`, diagnostics);
    }
    assert.deepEqual(unexpected403(), []);
    assert.deepEqual(api.refusals.filter((r) => r.code !== 403 || !r.path.includes('/secrets/')), [], 'no refusal but the intended secret 403');
  });
});
