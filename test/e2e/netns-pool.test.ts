// The pool of pod namespaces made ahead of time ([network] netns_pool): pods that take a set get
// working networking under their own pin path and the pooled IPC and UTS namespaces and /dev/shm,
// the pool refills, a pool left by a killed berthd is removed at restart, netns_pool = 0 makes each
// pod its own, and a stopped berthd leaves no pin.
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { mountPoints } from '../../src/util/mount.ts';
import { runCommand } from '../../src/util/run-command.ts';
import { census, runPodWith, startPodEnv, waitFor, type PodEnv } from '../helpers/pods.ts';
import type { TestDaemon } from '../helpers/daemon.ts';

const skip = process.getuid?.() === 0 ? false : 'needs root (network namespaces, mounts, runc)';
const NETWORK = { subnetPrefix: '10.220', bridgePrefix: 'bnt' };

let env: PodEnv | undefined;
afterEach(async () => {
  await env?.dispose();
  env = undefined;
});

/** IDs of the netns pins under the daemon's state (pods' and pooled ones alike). */
async function pins(d: TestDaemon): Promise<string[]> {
  const dir = join(d.state, 'netns');
  return [...(await mountPoints()).keys()].filter((p) => p.startsWith(`${dir}/`)).map((p) => basename(p)).sort();
}

/** Mount points under the pod directory `<state>/sandboxes/<id>/` (its IPC and UTS pins and /dev/shm). */
async function podDirMounts(d: TestDaemon, id: string): Promise<string[]> {
  const dir = join(d.state, 'sandboxes', id);
  return [...(await mountPoints()).keys()].filter((p) => p.startsWith(`${dir}/`)).map((p) => basename(p)).sort();
}

/** The inode of the namespace pinned at `path`, as /proc/<pid>/ns/<kind> links name it (`ipc:[N]`). */
const nsInode = async (path: string): Promise<number> => (await stat(path)).ino;

async function podIds(d: TestDaemon): Promise<string[]> {
  const { items } = await d.client.call<{ items: Array<{ id: string }> }>('runtime', 'ListPodSandbox', {});
  return items.map((p) => p.id);
}

/** Waits until the pins that are no pod's number `size`; returns their IDs. */
async function poolOf(d: TestDaemon, size: number): Promise<string[]> {
  return waitFor(`the netns pool to hold ${size}`, async () => {
    const pods = new Set(await podIds(d));
    const pool = (await pins(d)).filter((id) => !pods.has(id));
    return pool.length === size ? pool : undefined;
  });
}

const inNetns = async (d: TestDaemon, id: string, args: string[]): Promise<string> =>
  (await runCommand('nsenter', [`--net=${join(d.state, 'netns', id)}`, ...args], { step: `run ${args.join(' ')} in ${id}`, timeoutMs: 20_000 })).stdout;

async function podIp(d: TestDaemon, id: string): Promise<string> {
  const { status } = await d.client.call<{ status: { network: { ip: string } } }>('runtime', 'PodSandboxStatus', { pod_sandbox_id: id });
  return status.network.ip;
}

test('pods take pooled network namespaces under their own pin path, reach each other, and the pool refills', { skip }, async () => {
  env = await startPodEnv({ network: NETWORK, netnsPool: 2 });
  const d = env.daemon;
  const pool = await poolOf(d, 2);
  // Each pooled set holds the pod's IPC and UTS pins and /dev/shm too, under the same ID.
  const pooledIpc = new Map<string, number>();
  for (const id of pool) {
    assert.deepEqual(await podDirMounts(d, id), ['ipc', 'shm', 'uts'], `pooled set ${id}`);
    pooledIpc.set(id, await nsInode(join(d.state, 'sandboxes', id, 'ipc')));
  }

  const a = await runPodWith(env, ['sh', '-c', 'while true; do sleep 0.1; done']);
  const b = await runPodWith(env, ['sh', '-c', 'while true; do sleep 0.1; done']);
  // A pooled namespace comes with the sandbox ID it was pinned under: the pod's pin is <state>/netns/<id>.
  assert.ok(pool.includes(a.podId) && pool.includes(b.podId), `pods ${a.podId} and ${b.podId} took the pooled ${pool.join(', ')}`);
  const ipB = await podIp(d, b.podId);
  assert.match(ipB, /^10\.220\./);
  const seen = await d.client.call<{ stdout: Buffer; exit_code: number }>('runtime', 'ExecSync', {
    container_id: a.ctrId,
    cmd: ['sh', '-c', `ip -o link show lo && ip -o -4 addr show eth0 && ping -c1 -W5 ${ipB}`],
    timeout: 20,
  });
  assert.equal(seen.exit_code, 0, seen.stdout.toString());
  assert.match(seen.stdout.toString(), /lo: <LOOPBACK,UP/);
  assert.match(seen.stdout.toString(), new RegExp(`inet ${(await podIp(d, a.podId)).replace(/\./g, '\\.')}/`));

  // The container runs in the IPC namespace pooled before the pod existed, with the pooled /dev/shm
  // (a file it writes there is in the pool's tmpfs), and in the pod's own UTS namespace (its hostname).
  const shm = await d.client.call<{ stdout: Buffer; exit_code: number }>('runtime', 'ExecSync', {
    container_id: a.ctrId,
    cmd: ['sh', '-c', 'readlink /proc/self/ns/ipc && echo hello > /dev/shm/probe && hostname'],
    timeout: 20,
  });
  assert.equal(shm.exit_code, 0, shm.stdout.toString());
  const [ipcLink, hostname] = shm.stdout.toString().trim().split('\n');
  assert.equal(ipcLink, `ipc:[${pooledIpc.get(a.podId)}]`);
  assert.equal(hostname, (a.pod.metadata as { name: string }).name);
  assert.equal((await stat(join(d.state, 'sandboxes', a.podId, 'shm', 'probe'))).size, 6);

  // A pod sharing the host's IPC namespace takes no pooled set: it makes its own netns and UTS pin.
  const hostIpc = await runPodWith(env, ['true'], { pod: { linux: { security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'NODE' } } } } });
  assert.ok(!pool.includes(hostIpc.podId));
  assert.deepEqual(await podDirMounts(d, hostIpc.podId), ['uts']);
  assert.deepEqual((await pins(d)).filter((id) => id === hostIpc.podId), [hostIpc.podId]);

  // A host-network pod leaves the pool alone.
  const host = await runPodWith(env, ['true'], { hostNetwork: true });
  const refilled = await poolOf(d, 2);
  assert.ok(!refilled.includes(host.podId));
  assert.deepEqual(refilled.filter((id) => pool.includes(id)), [], 'the two taken were replaced by new ones');
  assert.match(await inNetns(d, refilled[0] as string, ['ip', '-o', 'link', 'show', 'lo']), /<LOOPBACK,UP/);
  for (const id of refilled) assert.deepEqual(await podDirMounts(d, id), ['ipc', 'shm', 'uts'], `refilled set ${id}`);

  for (const p of [a, b, host, hostIpc]) await d.client.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: p.podId });
  assert.deepEqual(await pins(d), refilled, 'removing the pods removed their pins, and only theirs');
  for (const p of [a, b]) assert.deepEqual(await podDirMounts(d, p.podId), [], `pod ${p.podId} left no IPC/UTS pin or /dev/shm`);
  await d.stop();
  const left = await census(d);
  assert.deepEqual(left.mounts, [], 'a stopped berthd leaves no netns pin and no mount');
});

test('a pool left by a killed berthd is removed at restart and made anew', { skip }, async () => {
  env = await startPodEnv({ network: NETWORK, netnsPool: 3 });
  const old = await poolOf(env.daemon, 3);
  await env.daemon.stop('SIGKILL');
  assert.deepEqual(await pins(env.daemon), old, 'the killed daemon left its pool pinned');
  for (const id of old) assert.deepEqual(await podDirMounts(env.daemon, id), ['ipc', 'shm', 'uts']);
  const d = await env.restart();
  const now = await poolOf(d, 3);
  assert.deepEqual(now.filter((id) => old.includes(id)), [], 'the old pins were swept, not reused');
  assert.deepEqual((await pins(d)).filter((id) => old.includes(id)), []);
  for (const id of old) assert.deepEqual(await podDirMounts(d, id), [], `the killed daemon's pooled IPC/UTS pins and /dev/shm of ${id} were swept`);
  await d.stop();
  assert.deepEqual((await census(d)).mounts, []);
});

test('netns_pool = 0: each pod makes its own network namespace, with loopback up', { skip }, async () => {
  env = await startPodEnv({ network: NETWORK, netnsPool: 0 });
  const d = env.daemon;
  assert.deepEqual(await pins(d), []);
  const a = await runPodWith(env, ['sh', '-c', 'while true; do sleep 0.1; done']);
  assert.deepEqual(await pins(d), [a.podId]);
  assert.deepEqual(await podDirMounts(d, a.podId), ['ipc', 'shm', 'uts']);
  assert.match(await podIp(d, a.podId), /^10\.220\./);
  assert.match(await inNetns(d, a.podId, ['ip', '-o', 'link', 'show', 'lo']), /<LOOPBACK,UP/);
  await d.client.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: a.podId });
  assert.deepEqual(await pins(d), []);
});
