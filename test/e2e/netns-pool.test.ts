// The pool of network namespaces made ahead of time ([network] netns_pool): pods that take one get
// working networking under their own pin path, the pool refills, a pool left by a killed berthd is
// removed at restart, netns_pool = 0 makes each pod its own, and a stopped berthd leaves no pin.
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
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

  // A host-network pod leaves the pool alone.
  const host = await runPodWith(env, ['true'], { hostNetwork: true });
  const refilled = await poolOf(d, 2);
  assert.ok(!refilled.includes(host.podId));
  assert.deepEqual(refilled.filter((id) => pool.includes(id)), [], 'the two taken were replaced by new ones');
  assert.match(await inNetns(d, refilled[0] as string, ['ip', '-o', 'link', 'show', 'lo']), /<LOOPBACK,UP/);

  for (const p of [a, b, host]) await d.client.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: p.podId });
  assert.deepEqual(await pins(d), refilled, 'removing the pods removed their pins, and only theirs');
  await d.stop();
  const left = await census(d);
  assert.deepEqual(left.mounts, [], 'a stopped berthd leaves no netns pin and no mount');
});

test('a pool left by a killed berthd is removed at restart and made anew', { skip }, async () => {
  env = await startPodEnv({ network: NETWORK, netnsPool: 3 });
  const old = await poolOf(env.daemon, 3);
  await env.daemon.stop('SIGKILL');
  assert.deepEqual(await pins(env.daemon), old, 'the killed daemon left its pool pinned');
  const d = await env.restart();
  const now = await poolOf(d, 3);
  assert.deepEqual(now.filter((id) => old.includes(id)), [], 'the old pins were swept, not reused');
  assert.deepEqual((await pins(d)).filter((id) => old.includes(id)), []);
  await d.stop();
  assert.deepEqual((await census(d)).mounts, []);
});

test('netns_pool = 0: each pod makes its own network namespace, with loopback up', { skip }, async () => {
  env = await startPodEnv({ network: NETWORK, netnsPool: 0 });
  const d = env.daemon;
  assert.deepEqual(await pins(d), []);
  const a = await runPodWith(env, ['sh', '-c', 'while true; do sleep 0.1; done']);
  assert.deepEqual(await pins(d), [a.podId]);
  assert.match(await podIp(d, a.podId), /^10\.220\./);
  assert.match(await inNetns(d, a.podId, ['ip', '-o', 'link', 'show', 'lo']), /<LOOPBACK,UP/);
  await d.client.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: a.podId });
  assert.deepEqual(await pins(d), []);
});
