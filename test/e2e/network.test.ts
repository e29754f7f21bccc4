// The pod network as the kubelet sees it through berthd's socket: NetworkReady from the network pods
// would join, UpdateRuntimeConfig's pod CIDR becoming the default network's subnet across restarts,
// and an admin's CNI config taking over from berth's default.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { startDaemon } from '../helpers/daemon.ts';

type Conditions = { status: { conditions: Array<{ type: string; status: boolean; reason: string; message: string }> }; info: Record<string, string> };

let base: string;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'berth-net-e2e-'));
});
after(async () => {
  await rm(base, { recursive: true, force: true });
});

test('default network: ready, takes the pod CIDR (kept across restarts), yields to an admin\'s CNI config', async (t) => {
  const confDir = join(base, 'net.d');
  const root = join(base, 'root');
  const config = ['[network]', `cni_conf_dir = "${confDir}"`, 'default_subnet = "10.220.250.0/24"', 'default_bridge = "bnte2e0"'].join('\n');
  let d = await startDaemon({ config, root });
  t.after(() => d.dispose());

  const st = await d.client.call<Conditions>('runtime', 'Status', { verbose: true });
  const ready = st.status.conditions.find((c) => c.type === 'NetworkReady');
  assert.equal(ready?.status, true, ready?.message);
  assert.match(st.info.network ?? '', /"name":"berth"/);
  const conflist = join(root, 'network', 'default.conflist');
  assert.match(await readFile(conflist, 'utf8'), /10\.220\.250\.0\/24[\s\S]*"bridge": "bnte2e0"|"bridge": "bnte2e0"[\s\S]*10\.220\.250\.0\/24/);

  await d.client.call('runtime', 'UpdateRuntimeConfig', { runtime_config: { network_config: { pod_cidr: '10.220.251.0/24' } } });
  assert.match(await readFile(conflist, 'utf8'), /10\.220\.251\.0\/24/);
  await d.client.call('runtime', 'UpdateRuntimeConfig', { runtime_config: { network_config: { pod_cidr: '' } } });
  await assert.rejects(
    d.client.call('runtime', 'UpdateRuntimeConfig', { runtime_config: { network_config: { pod_cidr: '10.220.251.0' } } }),
    (err: { code: number; details: string }) => err.code === GrpcStatus.INVALID_ARGUMENT && /pod CIDR "10\.220\.251\.0"/.test(err.details),
  );

  await d.dispose();
  d = await startDaemon({ config, root });
  assert.match(await readFile(conflist, 'utf8'), /10\.220\.251\.0\/24/, 'the pod CIDR survives a restart');

  await mkdir(confDir, { recursive: true });
  await writeFile(join(confDir, '05-broken.conflist'), '{ not json');
  await writeFile(join(confDir, '10-admin.conflist'), JSON.stringify({ cniVersion: '0.4.0', name: 'admin-net', plugins: [{ type: 'bridge', bridge: 'bnte2e1' }] }));
  const after = await d.client.call<Conditions>('runtime', 'Status', { verbose: true });
  assert.equal(after.status.conditions.find((c) => c.type === 'NetworkReady')?.status, true);
  assert.match(after.info.network ?? '', /"name":"admin-net".*10-admin\.conflist/);

  await rm(join(confDir, '10-admin.conflist'));
  const broken = await d.client.call<Conditions>('runtime', 'Status', {});
  const cond = broken.status.conditions.find((c) => c.type === 'NetworkReady');
  assert.equal(cond?.status, false);
  assert.match(cond?.message ?? '', /05-broken\.conflist/);
});
