// The fake API server the controller tests rely on behaves like kube-apiserver where it matters:
// RBAC and the admission policy from manifests/ really refuse, paging and watches follow the wire
// protocol, status subresources and generations follow the rules, stale writes get 409.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeApiServer } from '../helpers/fake-apiserver.ts';

type Obj = Record<string, unknown>;

describe('fake API server', () => {
  let api: FakeApiServer;
  const call = async (token: string, method: string, path: string, body?: unknown, type = 'application/merge-patch+json'): Promise<{ code: number; body: Obj }> => {
    const res = await fetch(`${api.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': method === 'PATCH' ? type : 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { code: res.status, body: (await res.json()) as Obj };
  };
  const node = (name: string): Obj => ({ apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { zone: 'a' } }, spec: {} });

  before(async () => {
    api = await FakeApiServer.start({ bookmarkMs: 100 });
    for (const n of ['n1', 'n2', 'n3']) api.apply(node(n));
  });
  after(async () => api?.close());

  test('no token is 401; RBAC from the manifests refuses what the roles do not grant', async () => {
    assert.equal((await fetch(`${api.url}/api/v1/nodes`)).status, 401);
    const agg = api.serviceAccountToken('berth-aggregator');
    assert.equal((await call(agg, 'GET', '/apis/berth.io/v1alpha1/berthnodes')).code, 200);
    assert.equal((await call(agg, 'GET', '/api/v1/nodes')).code, 403);
    assert.equal((await call(agg, 'PATCH', '/apis/berth.io/v1alpha1/namespaces/x/imageprefetches/p', { spec: {} })).code, 403, 'the aggregator patches only status');
    const agent = api.nodeToken('n1');
    assert.equal((await call(agent, 'GET', '/api/v1/namespaces/default/secrets/s')).code, 403, 'no secrets without a binding');
    assert.equal((await call(agent, 'DELETE', '/api/v1/nodes/n1')).code, 403);
  });

  test('the admission policy: the agent changes only its own node, and only berth.io/ labels', async () => {
    const agent = api.nodeToken('n1');
    const own = await call(agent, 'PATCH', '/api/v1/nodes/n1', { metadata: { labels: { 'berth.io/runtime': 'ready' } } });
    assert.equal(own.code, 200, JSON.stringify(own.body));
    const other = await call(agent, 'PATCH', '/api/v1/nodes/n2', { metadata: { labels: { 'berth.io/runtime': 'ready' } } });
    assert.equal(other.code, 403);
    assert.match(other.body.message as string, /may change only its own Node and BerthNode, not n2/);
    const foreign = await call(agent, 'PATCH', '/api/v1/nodes/n1', { metadata: { labels: { zone: 'b' } } });
    assert.equal(foreign.code, 403);
    assert.match(foreign.body.message as string, /only berth.io\/ labels/);
    const removal = await call(agent, 'PATCH', '/api/v1/nodes/n1', { metadata: { labels: { zone: null } } });
    assert.equal(removal.code, 403, 'removing a foreign label is a change too');
    const taint = await call(agent, 'PATCH', '/api/v1/nodes/n1', { spec: { unschedulable: true } });
    assert.equal(taint.code, 403);
    const bn = { apiVersion: 'berth.io/v1alpha1', kind: 'BerthNode', metadata: { name: 'n2' }, spec: {} };
    assert.equal((await call(agent, 'POST', '/apis/berth.io/v1alpha1/berthnodes', bn)).code, 403);
    assert.equal((await call(agent, 'POST', '/apis/berth.io/v1alpha1/berthnodes', { ...bn, metadata: { name: 'n1' } })).code, 201);
    // A token without the node claim (a plain service-account token) is refused outright.
    const unbound = api.serviceAccountToken('berth-node');
    const res = await call(unbound, 'PATCH', '/api/v1/nodes/n1', { metadata: { labels: { 'berth.io/x': 'y' } } });
    assert.equal(res.code, 403);
    assert.match(res.body.message as string, /carries no authentication.kubernetes.io\/node-name claim/);
  });

  test('the admission policy: the agent may add and remove exactly the berth.io/switching:NoSchedule taint', async () => {
    const agent = api.nodeToken('n3');
    const admin = 'admin-token';
    const other = { key: 'dedicated', value: 'gpu', effect: 'NoSchedule' };
    assert.equal((await call(admin, 'PATCH', '/api/v1/nodes/n3', { spec: { taints: [other] } })).code, 200);
    const ours = { key: 'berth.io/switching', effect: 'NoSchedule' };
    const add = await call(agent, 'PATCH', '/api/v1/nodes/n3', { spec: { taints: [other, ours] } });
    assert.equal(add.code, 200, JSON.stringify(add.body));
    const remove = await call(agent, 'PATCH', '/api/v1/nodes/n3', { spec: { taints: [other] } });
    assert.equal(remove.code, 200, JSON.stringify(remove.body));
    const refused = [
      { taints: [other, { ...ours, effect: 'NoExecute' }] },
      { taints: [other, { ...ours, value: 'x' }] },
      { taints: [other, ours, ours] },
      { taints: [ours] }, // drops someone else's taint
      { taints: [other, { key: 'berth.io/other', effect: 'NoSchedule' }] },
      { taints: [other, ours], unschedulable: false },
    ];
    for (const spec of refused) {
      const res = await call(agent, 'PATCH', '/api/v1/nodes/n3', { spec });
      assert.equal(res.code, 403, JSON.stringify(spec));
      assert.match(res.body.message as string, /berth.io\/switching:NoSchedule taint/);
    }
    assert.equal((await call(admin, 'PATCH', '/api/v1/nodes/n3', { spec: { taints: null } })).code, 200);
  });

  test('status subresource, generation and 409 on a stale resourceVersion; CRD schema enforced', async () => {
    const admin = 'admin-token';
    const base = '/apis/berth.io/v1alpha1/namespaces/ns/imageprefetches';
    const created = await call(admin, 'POST', base, { apiVersion: 'berth.io/v1alpha1', kind: 'ImagePrefetch', metadata: { name: 'p' }, spec: { images: ['busybox'] }, status: { matched: 5 } });
    assert.equal(created.code, 201);
    const meta = created.body.metadata as Obj;
    assert.equal(meta.generation, 1);
    assert.equal(created.body.status, undefined, 'create drops status on a status-subresource kind');
    const st = await call(admin, 'PATCH', `${base}/p/status`, { status: { matched: 1 }, spec: { images: ['x'] } });
    assert.deepEqual([(st.body.metadata as Obj).generation, st.body.status, st.body.spec], [1, { matched: 1 }, { images: ['busybox'] }]);
    const spec = await call(admin, 'PATCH', `${base}/p`, { spec: { images: ['busybox', 'alpine'] }, status: { matched: 9 } });
    assert.deepEqual([(spec.body.metadata as Obj).generation, spec.body.status], [2, { matched: 1 }]);
    const stale = await call(admin, 'PATCH', `${base}/p`, { metadata: { resourceVersion: meta.resourceVersion }, spec: { images: ['a'] } });
    assert.equal(stale.code, 409);
    const json = await call(admin, 'PATCH', `${base}/p`, [{ op: 'replace', path: '/spec/images/0', value: 'nginx' }], 'application/json-patch+json');
    assert.deepEqual((json.body.spec as Obj).images, ['nginx', 'alpine']);
    const invalid = await call(admin, 'PATCH', `${base}/p`, { spec: { maxConcurrentPulls: 0 } });
    assert.equal(invalid.code, 422);
  });

  test('list pages with limit/continue; a continue token past a compaction is 410', async () => {
    const admin = 'admin-token';
    const first = await call(admin, 'GET', '/api/v1/nodes?limit=2');
    assert.deepEqual(((first.body.items as Obj[]) ?? []).map((n) => (n.metadata as Obj).name), ['n1', 'n2']);
    const cont = (first.body.metadata as Obj).continue as string;
    const second = await call(admin, 'GET', `/api/v1/nodes?limit=2&continue=${encodeURIComponent(cont)}`);
    assert.deepEqual(((second.body.items as Obj[]) ?? []).map((n) => (n.metadata as Obj).name), ['n3']);
    assert.equal((second.body.metadata as Obj).continue, undefined);
    api.compact();
    api.apply(node('n4'));
    assert.equal((await call(admin, 'GET', `/api/v1/nodes?limit=2&continue=${encodeURIComponent(cont)}`)).code, 410);
  });

  test('watch: events after the resourceVersion, bookmarks, timeoutSeconds, 410 at start', async () => {
    const admin = 'admin-token';
    const rv = ((await call(admin, 'GET', '/api/v1/nodes')).body.metadata as Obj).resourceVersion as string;
    const res = await fetch(`${api.url}/api/v1/nodes?watch=1&allowWatchBookmarks=true&timeoutSeconds=1&resourceVersion=${rv}`, { headers: { authorization: 'Bearer admin-token' } });
    assert.equal(res.status, 200);
    api.apply(node('n5'));
    const text = await res.text(); // ends by itself after timeoutSeconds
    const events = text.trim().split('\n').map((l) => JSON.parse(l) as { type: string; object: Obj });
    assert.deepEqual(events[0]?.type, 'ADDED');
    assert.equal((events[0]?.object.metadata as Obj).name, 'n5');
    assert.ok(events.some((e) => e.type === 'BOOKMARK'));
    api.compact();
    const gone = await fetch(`${api.url}/api/v1/nodes?watch=1&resourceVersion=${rv}`, { headers: { authorization: 'Bearer admin-token' } });
    assert.equal(gone.status, 410);
    await gone.body?.cancel();
  });
});
