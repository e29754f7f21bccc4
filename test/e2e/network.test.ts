// The pod network as the kubelet sees it through berthd's socket: NetworkReady from the network pods
// would join, UpdateRuntimeConfig's pod CIDR becoming the default network's subnet across restarts,
// and an admin's CNI config taking over from berth's default; a failed CNI DEL retried through the
// netns it needs; a pod's traffic to beyond the node masqueraded.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { startDaemon } from '../helpers/daemon.ts';
import { mountPoints } from '../../src/util/mount.ts';
import { createNetns, removeNetns } from '../../src/network/netns.ts';
import { runPodWith, startPodEnv } from '../helpers/pods.ts';

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

test('a CNI DEL that fails keeps the netns, and the next StopPodSandbox or RemovePodSandbox retries it', { skip: process.getuid?.() === 0 ? false : 'needs root (netns, bridge, iptables)' }, async (t) => {
  const dir = join(base, 'flaky');
  const binDir = join(dir, 'bin');
  const confDir = join(dir, 'net.d');
  const marker = join(dir, 'fail-del');
  await mkdir(binDir, { recursive: true });
  await mkdir(confDir);
  // The real bridge plugin, except that DEL fails while the marker file exists.
  await writeFile(join(binDir, 'flakybridge'), `#!/bin/sh
if [ "$CNI_COMMAND" = DEL ] && [ -e ${marker} ]; then echo '{"cniVersion":"1.0.0","code":11,"msg":"flaky DEL"}'; exit 1; fi
exec /usr/lib/cni/bridge
`, { mode: 0o755 });
  const bridge = `brt${randomBytes(3).toString('hex')}`;
  const network = `flaky-${randomBytes(3).toString('hex')}`;
  const subnet = `10.210.${1 + (randomBytes(1)[0] as number) % 250}.0/24`;
  await writeFile(join(confDir, '10-flaky.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: network,
    plugins: [{ type: 'flakybridge', bridge, isGateway: true, ipMasq: true, ipam: { type: 'host-local', ranges: [[{ subnet }]], dataDir: join(dir, 'ipam') } }],
  }));
  const config = ['[network]', `cni_conf_dir = "${confDir}"`, `cni_bin_dirs = ["${binDir}", "/usr/lib/cni"]`].join('\n');
  const d = await startDaemon({ config });
  const masqRules = (): string[] => spawnSync('iptables-save', ['-t', 'nat']).stdout.toString().split('\n').filter((l) => l.includes(`name: \\"${network}\\"`));
  t.after(async () => {
    await rm(marker, { force: true });
    const { items } = await d.client.call<{ items: Array<{ id: string }> }>('runtime', 'ListPodSandbox', {});
    for (const p of items) await d.client.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: p.id });
    await d.dispose();
    for (const m of [...(await mountPoints()).keys()].filter((p) => p.startsWith(d.state))) spawnSync('umount', ['-l', m]);
    spawnSync('ip', ['link', 'del', bridge]);
  });

  const config0 = { metadata: { name: 'flaky', namespace: 'e2e', uid: 'flaky-uid', attempt: 0 } };
  const { pod_sandbox_id: id } = await d.client.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: config0 });
  const netns = join(d.state, 'netns', id);
  assert.ok((await mountPoints()).has(netns));
  assert.ok(masqRules().length > 0, 'bridge set up its masquerade rules for the pod');

  await writeFile(marker, '');
  const flaky = (err: { code: number; details: string }): boolean => err.code === GrpcStatus.UNAVAILABLE && /flakybridge DEL.*flaky DEL/.test(err.details);
  await assert.rejects(d.client.call('runtime', 'StopPodSandbox', { pod_sandbox_id: id }), flaky);
  const st = await d.client.call<{ status: { state: string } }>('runtime', 'PodSandboxStatus', { pod_sandbox_id: id });
  assert.equal(st.status.state, 'SANDBOX_NOTREADY');
  assert.ok((await mountPoints()).has(netns), 'the netns stays pinned for the retry');
  await assert.rejects(d.client.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: id }), flaky);
  assert.ok((await mountPoints()).has(netns));

  await rm(marker);
  await d.client.call('runtime', 'StopPodSandbox', { pod_sandbox_id: id });
  assert.ok(!(await mountPoints()).has(netns));
  assert.deepEqual(masqRules(), [], 'the retried DEL found and removed the masquerade rules');
  await d.client.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: id });
  const { items } = await d.client.call<{ items: unknown[] }>('runtime', 'ListPodSandbox', {});
  assert.equal(items.length, 0);
});

test('a pod on berth\'s default network reaches beyond the node, source-NATed by berth\'s one masquerade rule per subnet', { skip: process.getuid?.() === 0 ? false : 'needs root (netns, bridge, iptables)' }, async (t) => {
  const env = await startPodEnv({ network: { subnetPrefix: '10.220', bridgePrefix: 'bnt' } });
  t.after(() => env.dispose());
  // "Beyond the node": a network namespace behind a veth on a /30 of its own, reached through the
  // host's routing (as a real uplink would be), so the pod's packets pass POSTROUTING.
  const k = (randomBytes(1)[0] as number) % 60;
  const [hostAddr, outsideAddr] = [`10.220.252.${4 * k + 1}`, `10.220.252.${4 * k + 2}`];
  const outside = join(base, `outside-${randomBytes(3).toString('hex')}`);
  const veth = `bnto${randomBytes(3).toString('hex')}`;
  await createNetns(outside);
  t.after(async () => {
    spawnSync('ip', ['link', 'del', veth]);
    await removeNetns(outside);
  });
  const sh = (args: string[]): void => {
    const r = spawnSync(args[0] as string, args.slice(1));
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr.toString()}`);
  };
  sh(['ip', 'link', 'add', veth, 'type', 'veth', 'peer', 'name', `${veth}p`]);
  sh(['ip', 'link', 'set', `${veth}p`, 'netns', outside]);
  sh(['ip', 'addr', 'add', `${hostAddr}/30`, 'dev', veth]);
  sh(['ip', 'link', 'set', veth, 'up']);
  sh(['nsenter', `--net=${outside}`, 'ip', 'addr', 'add', `${outsideAddr}/30`, 'dev', `${veth}p`]);
  sh(['nsenter', `--net=${outside}`, 'ip', 'link', 'set', `${veth}p`, 'up']);
  // A TCP server out there answers each connection with the address it came from.
  const server = spawn('nsenter', [`--net=${outside}`, process.execPath, '-e',
    `require('node:net').createServer((s) => s.end(s.remoteAddress)).listen(8080, '${outsideAddr}', () => console.log('listening'))`]);
  t.after(() => {
    server.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    server.stdout.on('data', (d: Buffer) => d.toString().includes('listening') && resolve());
    server.once('exit', (code) => reject(new Error(`the outside server exited (${code})`)));
  });

  const pod = await runPodWith(env, ['sh', '-c', 'while true; do sleep 0.1; done']);
  const { status } = await env.daemon.client.call<{ status: { network: { ip: string } } }>('runtime', 'PodSandboxStatus', { pod_sandbox_id: pod.podId });
  assert.match(status.network.ip, /^10\.220\./);
  const got = await env.daemon.client.call<{ stdout: Buffer; stderr: Buffer; exit_code: number }>('runtime', 'ExecSync', {
    container_id: pod.ctrId,
    cmd: ['nc', '-w', '10', outsideAddr, '8080'],
    timeout: 20,
  });
  assert.equal(got.exit_code, 0, got.stderr.toString());
  assert.equal(got.stdout.toString(), hostAddr, `the server saw the node's address, not the pod's ${status.network.ip}`);
});
