// manifests/: rendered, valid, and the validator catches what it claims to (typos, wildcards,
// secret listing, bad custom resources), so a green run means something.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { loadDocs, staleFiles, validateDocs, type Doc } from '../../hack/validate-manifests.ts';
import { MANIFESTS_DIR, render } from '../../hack/render-manifests.ts';
import { parseConfigText } from '../../src/config/config.ts';

type Obj = Record<string, unknown>;

async function manifests(): Promise<Doc[]> {
  return loadDocs(MANIFESTS_DIR);
}

function find(docs: Doc[], kind: string, name: string): Obj {
  const d = docs.find((x) => x.obj.kind === kind && (x.obj.metadata as Obj).name === name && !x.file.startsWith('uninstall/'));
  assert.ok(d, `${kind}/${name} in manifests/`);
  return structuredClone(d.obj);
}

test('the committed manifests are what the renderer renders, and they validate', async () => {
  assert.deepEqual(await staleFiles(MANIFESTS_DIR), []);
  assert.deepEqual(await validateDocs(await manifests()), []);
});

test('the validate-manifests script exits 0 on the committed manifests', () => {
  const script = fileURLToPath(new URL('../../hack/validate-manifests.ts', import.meta.url));
  const r = spawnSync(process.execPath, [script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});

test('a typo in a built-in object is rejected (kubernetes-models alone accepts it)', async () => {
  const ds = find(await manifests(), 'DaemonSet', 'berth-node');
  const pod = ((ds.spec as Obj).template as Obj).spec as Obj;
  pod.nodeSelectr = { 'kubernetes.io/os': 'linux' };
  const problems = await validateDocs([{ file: 'x.yaml', obj: ds }]);
  assert.deepEqual(problems, ['x.yaml: DaemonSet/berth-node: unknown field spec.template.spec.nodeSelectr']);
});

test('a wrong type and a misspelled CRD schema keyword are rejected', async () => {
  const docs = await manifests();
  const ds = find(docs, 'DaemonSet', 'berth-node');
  ((ds.spec as Obj).template as Obj).metadata = { labels: { a: 1 } };
  const crd = find(docs, 'CustomResourceDefinition', 'berthnodes.berth.io');
  const version = ((crd.spec as Obj).versions as Obj[])[0] as Obj;
  const root = (version.schema as Obj).openAPIV3Schema as Obj;
  ((root.properties as Obj).status as Obj).maxProperites = 3;
  const problems = await validateDocs([{ file: 'a.yaml', obj: ds }, { file: 'b.yaml', obj: crd }]);
  assert.ok(problems.some((p) => p.startsWith('a.yaml') && /labels\/a|must be string/.test(p)), problems.join('\n'));
  assert.ok(problems.some((p) => p.includes('unknown field') && p.includes('status.maxProperites')), problems.join('\n'));
});

test('the RBAC lint rejects wildcards, listing secrets and bind/escalate', async () => {
  const role = (rules: Obj[]): Doc => ({ file: 'r.yaml', obj: { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'r' }, rules } });
  const wildcard = await validateDocs([role([{ apiGroups: ['berth.io'], resources: ['*'], verbs: ['get'] }])]);
  assert.deepEqual(wildcard, ['r.yaml: ClusterRole/r: rules[0].resources: wildcard']);
  const secrets = await validateDocs([role([{ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'watch'] }])]);
  assert.equal(secrets.length, 1);
  assert.match(secrets[0] ?? '', /list\/watch on secrets/);
  const escalate = await validateDocs([role([{ apiGroups: ['rbac.authorization.k8s.io'], resources: ['clusterroles'], verbs: ['escalate', 'bind'] }])]);
  assert.equal(escalate.length, 2);
});

test('RBAC grants exactly what the issue lists', async () => {
  const docs = await manifests();
  const rules = (name: string): Obj[] => find(docs, 'ClusterRole', name).rules as Obj[];
  assert.deepEqual(rules('berth-node'), [
    { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch', 'patch'] },
    { apiGroups: [''], resources: ['pods'], verbs: ['list'] },
    { apiGroups: ['berth.io'], resources: ['berthnodes', 'berthnodes/status'], verbs: ['get', 'create', 'patch'] },
    { apiGroups: ['berth.io'], resources: ['imageprefetches'], verbs: ['get', 'list', 'watch'] },
    { apiGroups: ['node.k8s.io'], resources: ['runtimeclasses'], verbs: ['get', 'list', 'watch'] },
  ]);
  assert.deepEqual(rules('berth-aggregator'), [
    { apiGroups: ['berth.io'], resources: ['berthnodes'], verbs: ['list', 'watch'] },
    { apiGroups: ['berth.io'], resources: ['imageprefetches'], verbs: ['list', 'watch'] },
    { apiGroups: ['berth.io'], resources: ['imageprefetches/status'], verbs: ['patch'] },
  ]);
  for (const d of docs.filter((x) => x.obj.kind === 'ClusterRoleBinding' || x.obj.kind === 'RoleBinding')) {
    assert.notEqual(((d.obj.roleRef as Obj).name as string), 'berth-pull-secret-reader', 'the secret reader is bound by admins per namespace');
  }
});

test('sample ImagePrefetches are checked against the CRD schema and its CEL rules', async () => {
  const docs = await manifests();
  const crds = docs.filter((d) => d.obj.kind === 'CustomResourceDefinition');
  const sample = (spec: Obj): Doc => ({ file: 's.yaml', obj: { apiVersion: 'berth.io/v1alpha1', kind: 'ImagePrefetch', metadata: { name: 's', namespace: 'default' }, spec } });
  assert.deepEqual(await validateDocs([...crds, sample({ images: ['busybox', '127.0.0.1:5000/a/b:v1@sha256:' + 'a'.repeat(64)] })]), []);
  const bad = async (spec: Obj, pattern: RegExp): Promise<void> => {
    const problems = await validateDocs([...crds, sample(spec)]);
    assert.ok(problems.some((p) => pattern.test(p)), `${JSON.stringify(spec)} → ${problems.join('\n')}`);
  };
  await bad({ images: [] }, /images must NOT have fewer than 1 items/);
  await bad({ images: Array.from({ length: 101 }, (_, i) => `img${i}`) }, /images must NOT have more than 100 items/);
  await bad({ images: ['Busybox:latest'] }, /images\/0 must match pattern/);
  await bad({ images: ['busybox'], maxConcurrentPulls: 0 }, /maxConcurrentPulls must be >= 1/);
  await bad({ images: ['busybox'], nodeSelectr: {} }, /must NOT have additional properties \(nodeSelectr\)/);
  await bad({ images: ['busybox'], backoff: { initialSeconds: 60, maxSeconds: 10 } }, /backoff.initialSeconds must not exceed/);
});

test('the renderer applies image, version, namespace and p2p', async () => {
  const out = render({ image: '127.0.0.1:5999/x/berth:9.9.9', version: '9.9.9', namespace: 'berth-test', p2p: { enabled: true, port: 6000 } });
  const all = [...out.values()].flat();
  const ds = all.find((o) => o.kind === 'DaemonSet' && (o.metadata as Obj).name === 'berth-node') as Obj;
  assert.equal((ds.metadata as Obj).namespace, 'berth-test');
  const pod = ((ds.spec as Obj).template as Obj).spec as Obj;
  assert.ok((pod.containers as Obj[]).every((c) => c.image === '127.0.0.1:5999/x/berth:9.9.9'));
  // p2p: berthd listens on the port (its config parses), a headless Service over the DaemonSet's
  // pods names the peers, and the agent is told to resolve it.
  const cm = all.find((o) => o.kind === 'ConfigMap') as Obj;
  const toml = (cm.data as Obj)['config.toml'] as string;
  assert.deepEqual(parseConfigText(toml).p2p.listen, { host: '0.0.0.0', port: 6000 });
  assert.doesNotMatch(toml, /mirrors/);
  const svc = all.find((o) => o.kind === 'Service') as Obj;
  assert.deepEqual({ name: (svc.metadata as Obj).name, namespace: (svc.metadata as Obj).namespace }, { name: 'berth-p2p', namespace: 'berth-test' });
  const svcSpec = svc.spec as Obj;
  assert.equal(svcSpec.clusterIP, 'None');
  const podLabels = (((ds.spec as Obj).template as Obj).metadata as Obj).labels as Obj;
  for (const [k, v] of Object.entries(svcSpec.selector as Obj)) assert.equal(podLabels[k], v, `the Service selects the DaemonSet's pods by ${k}`);
  assert.deepEqual(svcSpec.ports, [{ name: 'p2p', port: 6000, targetPort: 6000, protocol: 'TCP' }]);
  const agent = (pod.containers as Obj[]).find((c) => c.name === 'node-agent') as Obj;
  const cmd = (agent.command as string[]).join(' ');
  assert.match(cmd, /--p2p-peers berth-p2p\.berth-test\.svc --p2p-port 6000/);
  assert.equal(pod.dnsPolicy, 'ClusterFirstWithHostNet', 'a hostNetwork pod resolves Service names only with this policy');
  // Without --p2p: no Service, no agent flag, no [p2p] in the config.
  const plain = [...render({ image: 'x', version: '9.9.9', namespace: 'berth-test', p2p: { enabled: false, port: 6000 } }).values()].flat();
  assert.equal(plain.some((o) => o.kind === 'Service'), false);
  assert.doesNotMatch(JSON.stringify(plain), /p2p/);
  const policy = all.find((o) => o.kind === 'ValidatingAdmissionPolicy') as Obj;
  assert.match(JSON.stringify(policy), /system:serviceaccount:berth-test:berth-node/);
  const dir = await mkdtemp(join(tmpdir(), 'berth-manifests-'));
  try {
    const script = fileURLToPath(new URL('../../hack/render-manifests.ts', import.meta.url));
    const r = spawnSync(process.execPath, [script, '--out', dir, '--namespace', 'berth-test', '--version', '9.9.9', '--p2p', '--p2p-port', '6000'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(await validateDocs(await loadDocs(dir)), []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the DaemonSet keeps the node agent unprivileged and the installer privileged', async () => {
  const ds = find(await manifests(), 'DaemonSet', 'berth-node');
  const spec = ds.spec as Obj;
  assert.deepEqual((spec.updateStrategy as Obj).rollingUpdate, { maxUnavailable: '10%' });
  const pod = (spec.template as Obj).spec as Obj;
  assert.equal(pod.hostNetwork, true);
  assert.equal(pod.priorityClassName, 'system-node-critical');
  assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
  const [install] = pod.initContainers as Obj[];
  assert.equal(install?.name, 'install');
  assert.equal((install?.securityContext as Obj).privileged, true);
  const agent = (pod.containers as Obj[]).find((c) => c.name === 'node-agent') as Obj;
  const sc = agent.securityContext as Obj;
  assert.equal(sc.privileged, false);
  assert.equal(sc.readOnlyRootFilesystem, true);
  assert.ok((agent.volumeMounts as Obj[]).every((m) => m.readOnly === true));
  assert.equal(((agent.readinessProbe as Obj).httpGet as Obj).path, '/readyz');
});
