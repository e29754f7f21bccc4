// The kubelet switch removes the old runtime's pods through that runtime's own CRI socket: here a
// real containerd 1.6 (Debian's, CRI plugin) with a host-network pod, found by the switch through
// the kubelet's config under a temp host root. Needs root and containerd; skipped otherwise.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { access, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CriClient } from '../../src/client/cri-client.ts';
import { startDaemon, type TestDaemon } from '../helpers/daemon.ts';
import { fakeHost, type FakeHost } from '../helpers/host-root.ts';
import { busyboxImage, pushImage } from '../helpers/images.ts';
import { until } from '../helpers/poll.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { BERTH_VERSION } from '../../src/version.ts';

const hasContainerd = await access('/usr/bin/containerd').then(
  () => true,
  () => false,
);
const SKIP = process.geteuid?.() !== 0 ? 'needs root: containerd runs a pod' : hasContainerd ? undefined : 'needs Debian containerd (/usr/bin/containerd)';

let registry: TestRegistry;
let daemon: TestDaemon;
let h: FakeHost;
let containerd: ChildProcess | undefined;
let client: CriClient | undefined;

interface Pods {
  items: Array<{ id: string }>;
}

before(async () => {
  if (SKIP) return;
  registry = await startRegistry();
  await pushImage(registry.url, 'berth-test/pause', 'v1', await busyboxImage({ config: { Entrypoint: ['/bin/busybox', 'sleep', '2147483647'], Cmd: [] } }));
  daemon = await startDaemon();
  h = await fakeHost();
  const dir = join(h.dir, 'containerd');
  const socket = join(h.root, 'run/containerd/containerd.sock');
  await mkdir(dir, { recursive: true });
  await mkdir(join(h.root, 'run/containerd'), { recursive: true });
  await writeFile(
    join(dir, 'config.toml'),
    `version = 2
root = "${dir}/root"
state = "${dir}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "${socket}"
[ttrpc]
  address = "${socket}.ttrpc"
[debug]
  address = "${dir}/debug.sock"
[plugins."io.containerd.grpc.v1.cri"]
  disable_apparmor = true
  restrict_oom_score_adj = true
  sandbox_image = "${registry.host}/berth-test/pause:v1"
`,
  );
  containerd = spawn('containerd', ['--config', join(dir, 'config.toml'), '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'ignore'] });
  client = new CriClient(socket);
  const c = client;
  await until('containerd answers CRI Version', () =>
    c.call('runtime', 'Version', {}, { timeoutMs: 1000 }).then(
      () => true,
      () => false,
    ),
  60_000);
  // The kubelet of this fake node runs on containerd, as a KubeletConfiguration says.
  await mkdir(join(h.root, 'var/lib/kubelet'), { recursive: true });
  await writeFile(join(h.root, 'var/lib/kubelet/config.yaml'), 'kind: KubeletConfiguration\ncontainerRuntimeEndpoint: unix:///run/containerd/containerd.sock\n');
});

after(async () => {
  if (client) {
    // Whatever the test left: containerd's shims outlive it by design.
    const left = await client.call<Pods>('runtime', 'ListPodSandbox', {}).catch(() => ({ items: [] }));
    for (const p of left.items) {
      await client.call('runtime', 'StopPodSandbox', { pod_sandbox_id: p.id }).catch(() => undefined);
      await client.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: p.id }).catch(() => undefined);
    }
    client.close();
  }
  if (containerd && containerd.exitCode === null) {
    const exited = new Promise((resolve) => containerd?.once('exit', resolve));
    containerd.kill('SIGTERM');
    await exited;
  }
  await h?.dispose();
  await daemon?.dispose();
  await registry?.stop();
});

test('switch stops and removes the pods of the runtime the kubelet leaves', { skip: SKIP, timeout: 180_000 }, async () => {
  const c = client as CriClient;
  const config = {
    metadata: { name: 'old-pod', namespace: 'default', uid: 'berth-switch-test', attempt: 0 },
    log_directory: join(h.dir, 'logs'),
    linux: { security_context: { namespace_options: { network: 'NODE' } } },
  };
  await c.call('runtime', 'RunPodSandbox', { config }, { timeoutMs: 120_000 });
  assert.equal((await c.call<Pods>('runtime', 'ListPodSandbox', {})).items.length, 1);

  const r = await h.run(['switch', '--apply', '--drained', '--socket', daemon.socket, '--version', BERTH_VERSION, '--health-timeout', '20']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /"pod":"default\/old-pod","msg":"removed pod of the old runtime"/);
  assert.deepEqual((await c.call<Pods>('runtime', 'ListPodSandbox', {})).items, []);
  assert.deepEqual(await h.calls(), ['systemctl stop kubelet.service', 'systemctl start kubelet.service']);
});
