// Pods across daemon restarts, hung monitors, crash loops and churn: containers outlive berthd,
// exits while it is down are picked up, and nothing is left on the host afterwards.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { alive, census, cgroupsLeft, containerConfig, containerStatus, podConfig, runPodWith, startPodEnv, waitExited, waitFor, type PodEnv } from '../helpers/pods.ts';

const rootSkip = process.getuid?.() === 0 ? false : 'needs root (mounts, namespaces, runc)';

describe('pod lifecycle under restarts and churn', { skip: rootSkip }, () => {
  let env: PodEnv;
  before(async () => {
    env = await startPodEnv();
  });
  after(async () => {
    await env?.dispose();
  });

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    test(`containers survive berthd ${signal}; one that exits meanwhile shows its real exit code`, async () => {
      const c = env.daemon.client;
      const keep = await runPodWith(env, ['sh', '-c', 'while true; do sleep 0.1; done']);
      // Waits for a file the test creates while berthd is down, then exits 42.
      const late = await runPodWith(env, ['sh', '-c', 'while [ ! -e /tmp/go ]; do sleep 0.05; done; exit 42'], { hostNetwork: true });
      const before = await containerStatus(env.daemon, keep.ctrId);
      assert.equal(before.status.state, 'CONTAINER_RUNNING');

      await env.daemon.stop(signal);
      const lateInfo = JSON.parse((await containerStatus(await env.restart(), late.ctrId, true)).info.info ?? '{}') as { pid: number };
      // Same daemon again now; stop it once more to let the container exit while nobody watches.
      await env.daemon.stop(signal);
      await import('node:fs/promises').then((fs) => fs.writeFile(`/proc/${lateInfo.pid}/root/tmp/go`, ''));
      await waitFor('the late container to exit', async () => {
        try {
          process.kill(lateInfo.pid, 0);
          return undefined;
        } catch {
          return true;
        }
      });
      const d = await env.restart();
      const kept = await containerStatus(d, keep.ctrId);
      assert.equal(kept.status.state, 'CONTAINER_RUNNING');
      assert.equal(kept.status.started_at, before.status.started_at);
      const exited = await waitExited(d, late.ctrId);
      assert.equal(exited.exit_code, 42);
      assert.equal(exited.reason, 'Error');
      assert.ok(exited.finished_at > exited.started_at);
      const pods = await d.client.call<{ items: Array<{ id: string; state: string }> }>('runtime', 'ListPodSandbox', {});
      for (const p of [keep, late]) assert.equal(pods.items.find((x) => x.id === p.podId)?.state, 'SANDBOX_READY');
      const ex = await d.client.call<{ stdout: Buffer }>('runtime', 'ExecSync', { container_id: keep.ctrId, cmd: ['echo', 'still here'], timeout: 10 });
      assert.equal(ex.stdout.toString(), 'still here\n');
      for (const p of [keep, late]) await d.client.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: p.podId });
      void c;
    });
  }

  test('a damaged container record costs that container only', async () => {
    const a = await runPodWith(env, ['sh', '-c', 'while true; do sleep 0.1; done'], { hostNetwork: true });
    const b = await runPodWith(env, ['sh', '-c', 'while true; do sleep 0.1; done'], { hostNetwork: true });
    await env.daemon.stop('SIGKILL');
    await writeFile(join(env.daemon.root, 'metadata', 'containers', `${a.ctrId}.json`), '{"id": "torn');
    const d = await env.restart();
    const { containers } = await d.client.call<{ containers: Array<{ id: string }> }>('runtime', 'ListContainers', {});
    assert.ok(!containers.some((x) => x.id === a.ctrId));
    assert.equal((await containerStatus(d, b.ctrId)).status.state, 'CONTAINER_RUNNING');
    assert.ok(d.logs().includes('unreadable container record moved aside'));
    // The container nobody has a record of is not left running, mounted or holding its image.
    assert.ok(d.logs().includes('removed a container berth has no record of'));
    assert.ok(!(await census(d)).mounts.some((m) => m.includes(a.ctrId)));
    for (const p of [a, b]) await d.client.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: p.podId });
  });

  test('a container whose conmon is stopped does not slow calls about others', async () => {
    const hung = await runPodWith(env, ['sh', '-c', 'while true; do sleep 0.1; done'], { hostNetwork: true });
    const other = await runPodWith(env, ['sh', '-c', 'while true; do sleep 0.1; done'], { hostNetwork: true });
    const { info } = await containerStatus(env.daemon, hung.ctrId, true);
    const conmonPid = (JSON.parse(info.info ?? '{}') as { conmonPid: number }).conmonPid;
    assert.ok(conmonPid > 0);
    process.kill(conmonPid, 'SIGSTOP');
    try {
      const c = env.daemon.client;
      // Each of these would time out (5 s) if it waited on the stopped monitor.
      await c.call('runtime', 'ListContainers', {}, { timeoutMs: 5000 });
      await c.call('runtime', 'ContainerStatus', { container_id: hung.ctrId }, { timeoutMs: 5000 });
      await c.call('runtime', 'ListPodSandbox', {}, { timeoutMs: 5000 });
      await c.call('runtime', 'StopContainer', { container_id: other.ctrId, timeout: 2 }, { timeoutMs: 5000 });
      assert.equal((await containerStatus(env.daemon, other.ctrId)).status.state, 'CONTAINER_EXITED');
    } finally {
      process.kill(conmonPid, 'SIGCONT');
    }
    for (const p of [hung, other]) await env.daemon.client.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: p.podId });
  });

  test('crash loop: the same container recreated with attempt counting up, without leaks', async () => {
    const c = env.daemon.client;
    const pod = podConfig(env, {}, { hostNetwork: true });
    const { pod_sandbox_id: podId } = await c.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: pod });
    let previous = '';
    for (let attempt = 0; attempt < 25; attempt++) {
      const { container_id: id } = await c.call<{ container_id: string }>('runtime', 'CreateContainer', {
        pod_sandbox_id: podId,
        config: containerConfig('crasher', ['sh', '-c', 'echo boom; exit 1'], { metadata: { name: 'crasher', attempt } }),
        sandbox_config: pod,
      });
      await c.call('runtime', 'StartContainer', { container_id: id });
      const st = await waitExited(env.daemon, id);
      assert.equal(st.exit_code, 1);
      // The kubelet keeps the last dead attempt and removes the one before.
      if (previous) await c.call('runtime', 'RemoveContainer', { container_id: previous });
      previous = id;
    }
    const { containers } = await c.call<{ containers: unknown[] }>('runtime', 'ListContainers', { filter: { pod_sandbox_id: podId } });
    assert.equal(containers.length, 1);
    const mid = await census(env.daemon);
    assert.ok(mid.conmons.length === 0, `conmon processes left: ${mid.conmons.join(' ')}`);
    assert.equal(mid.mounts.filter((m) => m.includes('/containers/')).length, 1, mid.mounts.join('\n'));
    await c.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: podId });
  });

  test('churn: dozens of pods through their whole life leave nothing behind', async () => {
    const c = env.daemon.client;
    const containerIds: string[] = [];
    const podIds: string[] = [];
    const holders: number[] = [];
    const runOne = async (i: number): Promise<void> => {
      const pid = i % 3 === 0 ? 'POD' : 'CONTAINER';
      const { podId, ctrId } = await runPodWith(env, ['sh', '-c', 'while true; do sleep 0.1; done'], {
        pod: { linux: { security_context: { namespace_options: { network: 'POD', pid, ipc: 'POD' } } } },
        container: { linux: { security_context: { namespace_options: { pid } } } },
      });
      const { status } = await containerStatus(env.daemon, ctrId);
      assert.equal(status.state, 'CONTAINER_RUNNING');
      containerIds.push(ctrId);
      podIds.push(podId);
      const { info } = await c.call<{ info: Record<string, string> }>('runtime', 'PodSandboxStatus', { pod_sandbox_id: podId, verbose: true });
      const holder = (JSON.parse(info.info ?? '{}') as { pid: number }).pid;
      assert.equal(holder > 0, pid === 'POD', 'only a shared PID namespace gets a holder process');
      if (holder > 0) holders.push(holder);
      await c.call('runtime', 'StopContainer', { container_id: ctrId, timeout: 0 });
      await c.call('runtime', 'RemoveContainer', { container_id: ctrId });
      await c.call('runtime', 'StopPodSandbox', { pod_sandbox_id: podId });
      await c.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: podId });
    };
    for (let i = 0; i < 36; i += 2) await Promise.all([runOne(i), runOne(i + 1)]);
    const left = await waitFor('the census to come out clean', async () => {
      const now = await census(env.daemon);
      return now.conmons.length === 0 ? now : undefined;
    });
    // What stays pinned is the daemon's pool of namespaces for the next pods (netns-pool.test.ts),
    // each set a netns pin with the IPC and UTS pins and /dev/shm under the same ID; none of these pods'.
    const pooled = left.netns.map((m) => m.slice(m.lastIndexOf('/') + 1));
    const inPool = (m: string): boolean => m.endsWith('/netns') || m.includes('/netns/') || pooled.some((id) => m.includes(`/sandboxes/${id}/`));
    assert.deepEqual(left.mounts.filter((m) => !inPool(m)), []);
    assert.deepEqual(left.mounts.filter((m) => podIds.some((id) => m.includes(id))), []);
    assert.ok(left.netns.length <= 4, `more pins than the pool holds: ${left.netns.join(' ')}`);
    assert.equal(containerIds.length, 36);
    assert.deepEqual(await cgroupsLeft(containerIds), []);
    assert.deepEqual(await alive(holders), []);
  });
});
