// Pods and containers end to end: a real berthd runs busybox pods on runc under conmon with the
// default CNI bridge, and the tests drive it the way crictl and a kubelet do.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { containerConfig, containerStatus, podConfig, runPodWith, startPodEnv, waitExited, waitFor, BUSYBOX, type PodEnv } from '../helpers/pods.ts';

const rootSkip = process.getuid?.() === 0 ? false : 'needs root (mounts, namespaces, runc)';

const grpcCode = (code: number, re: RegExp) => (err: { code: number; details: string }) => {
  assert.equal(err.code, code, `expected ${GrpcStatus[code]}, got ${GrpcStatus[err.code]}: ${err.details}`);
  assert.match(err.details, re);
  return true;
};

describe('pods and containers', { skip: rootSkip }, () => {
  let env: PodEnv;
  before(async () => {
    env = await startPodEnv({ images: { withvol: { config: { Volumes: { '/var/www': {} } }, layers: [{ files: [{ path: 'var/www', type: 'dir', uid: 33, gid: 33, mode: 0o750 }, { path: 'var/www/index.html', content: 'seed\n', uid: 33, gid: 33 }] }] } } });
  });
  after(async () => {
    await env?.dispose();
  });

  test('crictl flow: runp, create, start, status, logs, exec, stop, rm', async () => {
    const c = env.daemon.client;
    const { podId, ctrId, pod } = await runPodWith(env, ['sh', '-c', 'trap "exit 0" TERM; echo hello; echo oops >&2; while true; do sleep 0.1; done']);
    const { status: podStatus } = await c.call<{ status: { state: string; network: { ip: string } } }>('runtime', 'PodSandboxStatus', { pod_sandbox_id: podId });
    assert.equal(podStatus.state, 'SANDBOX_READY');
    assert.match(podStatus.network.ip, /^10\.210\.\d+\.\d+$/);

    const { status } = await containerStatus(env.daemon, ctrId);
    assert.equal(status.state, 'CONTAINER_RUNNING');
    assert.ok(status.started_at > 0);
    const logPath = `${(pod.log_directory as string)}/main.log`;
    assert.equal(status.log_path, logPath);
    const log = await waitFor('log lines', async () => {
      const text = await readFile(logPath, 'utf8').catch(() => '');
      return text.split('\n').length >= 3 ? text : undefined;
    });
    const lines = log.trim().split('\n');
    assert.match(lines.find((l) => l.endsWith('hello')) ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d) stdout F hello$/);
    assert.match(lines.find((l) => l.endsWith('oops')) ?? '', / stderr F oops$/);

    const ex = await c.call<{ stdout: Buffer; stderr: Buffer; exit_code: number }>('runtime', 'ExecSync', { container_id: ctrId, cmd: ['sh', '-c', 'hostname; echo err >&2; exit 3'], timeout: 10 });
    assert.equal(ex.stdout.toString(), `${(pod.metadata as { name: string }).name}\n`);
    assert.equal(ex.stderr.toString(), 'err\n');
    assert.equal(ex.exit_code, 3);

    await c.call('runtime', 'StopContainer', { container_id: ctrId, timeout: 10 });
    const stopped = await containerStatus(env.daemon, ctrId);
    assert.equal(stopped.status.state, 'CONTAINER_EXITED');
    assert.equal(stopped.status.exit_code, 0);
    assert.equal(stopped.status.reason, 'Completed');
    await c.call('runtime', 'RemoveContainer', { container_id: ctrId });
    await assert.rejects(c.call('runtime', 'ContainerStatus', { container_id: ctrId }), grpcCode(GrpcStatus.NOT_FOUND, /not found/));
    await c.call('runtime', 'StopPodSandbox', { pod_sandbox_id: podId });
    await c.call('runtime', 'StopPodSandbox', { pod_sandbox_id: podId });
    await c.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: podId });
    await c.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: podId });
  });

  test('/dev/shm is one 64 MiB tmpfs shared by the containers of a pod, and the pod\'s own', async () => {
    const c = env.daemon.client;
    const a = await runPodWith(env, ['sh', '-c', 'echo shared > /dev/shm/x; while true; do sleep 0.1; done']);
    const { container_id: b } = await c.call<{ container_id: string }>('runtime', 'CreateContainer', {
      pod_sandbox_id: a.podId,
      config: containerConfig('second', ['sh', '-c', 'while true; do sleep 0.1; done']),
      sandbox_config: a.pod,
    });
    await c.call('runtime', 'StartContainer', { container_id: b });
    const read = await waitFor('the first container to write /dev/shm/x', async () => {
      const r = await c.call<{ stdout: Buffer; exit_code: number }>('runtime', 'ExecSync', { container_id: b, cmd: ['cat', '/dev/shm/x'], timeout: 10 });
      return r.exit_code === 0 ? r.stdout.toString() : undefined;
    });
    assert.equal(read, 'shared\n');
    const mounts = await c.call<{ stdout: Buffer }>('runtime', 'ExecSync', { container_id: b, cmd: ['grep', ' /dev/shm ', '/proc/mounts'], timeout: 10 });
    assert.match(mounts.stdout.toString(), /^\S+ \/dev\/shm tmpfs .*size=65536k/m);
    const other = await runPodWith(env, ['sh', '-c', 'while true; do sleep 0.1; done']);
    const none = await c.call<{ exit_code: number }>('runtime', 'ExecSync', { container_id: other.ctrId, cmd: ['test', '-e', '/dev/shm/x'], timeout: 10 });
    assert.notEqual(none.exit_code, 0, 'another pod has a /dev/shm of its own');
    for (const p of [a.podId, other.podId]) await c.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: p });
  });

  test('ExecSync past its timeout fails with DEADLINE_EXCEEDED and leaves no process behind', async () => {
    const c = env.daemon.client;
    const { podId, ctrId } = await runPodWith(env, ['tail', '-f', '/dev/null'], { hostNetwork: true });
    await assert.rejects(
      c.call('runtime', 'ExecSync', { container_id: ctrId, cmd: ['sleep', '4321'], timeout: 1 }),
      grpcCode(GrpcStatus.DEADLINE_EXCEEDED, /timed out after 1 s/),
    );
    const left = await c.call<{ stdout: Buffer }>('runtime', 'ExecSync', { container_id: ctrId, cmd: ['sh', '-c', 'pgrep sleep || true'], timeout: 10 });
    assert.equal(left.stdout.toString(), '');
    await c.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: podId });
  });

  test('exit codes and reasons: Completed and Error', async () => {
    const ok = await runPodWith(env, ['true'], { hostNetwork: true });
    const okStatus = await waitExited(env.daemon, ok.ctrId);
    assert.equal(okStatus.exit_code, 0);
    assert.equal(okStatus.reason, 'Completed');
    assert.ok(okStatus.finished_at >= okStatus.started_at);
    const bad = await runPodWith(env, ['sh', '-c', 'exit 7'], { hostNetwork: true });
    const badStatus = await waitExited(env.daemon, bad.ctrId);
    assert.equal(badStatus.exit_code, 7);
    assert.equal(badStatus.reason, 'Error');
    for (const p of [ok, bad]) await env.daemon.client.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: p.podId });
  });

  test('a container killed by the OOM killer reports OOMKilled', async () => {
    // dd's 64 MiB buffer cannot fit in a 16 MiB memory limit.
    const { podId, ctrId } = await runPodWith(env, ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1'], {
      hostNetwork: true,
      container: { linux: { resources: { memory_limit_in_bytes: 16 * 1024 * 1024 } } },
    });
    const st = await waitExited(env.daemon, ctrId);
    assert.equal(st.exit_code, 137);
    assert.equal(st.reason, 'OOMKilled');
    await env.daemon.client.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: podId });
  });

  test('StopContainer kills with SIGKILL when the stop signal is ignored', async () => {
    const { podId, ctrId } = await runPodWith(env, ['sh', '-c', 'trap "" TERM; while true; do sleep 1; done'], { hostNetwork: true });
    await env.daemon.client.call('runtime', 'StopContainer', { container_id: ctrId, timeout: 1 });
    const { status } = await containerStatus(env.daemon, ctrId);
    assert.equal(status.state, 'CONTAINER_EXITED');
    assert.equal(status.exit_code, 137);
    await env.daemon.client.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: podId });
  });

  test('bad input gets the right codes', async () => {
    const c = env.daemon.client;
    await assert.rejects(c.call('runtime', 'RunPodSandbox', { config: { metadata: { name: 'x' } } }), grpcCode(GrpcStatus.INVALID_ARGUMENT, /metadata/));
    await assert.rejects(c.call('runtime', 'RunPodSandbox', { config: podConfig(env), runtime_handler: 'nope' }), grpcCode(GrpcStatus.INVALID_ARGUMENT, /runtime handler "nope"/));
    await assert.rejects(c.call('runtime', 'PodSandboxStatus', { pod_sandbox_id: 'f'.repeat(64) }), grpcCode(GrpcStatus.NOT_FOUND, /not found/));
    await c.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: 'f'.repeat(64) });
    await c.call('runtime', 'RemoveContainer', { container_id: 'f'.repeat(64) });
    await assert.rejects(c.call('runtime', 'ContainerStatus', { container_id: 'f'.repeat(64) }), grpcCode(GrpcStatus.NOT_FOUND, /not found/));

    const pod = podConfig(env, {}, { hostNetwork: true });
    const { pod_sandbox_id: podId } = await c.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: pod });
    await assert.rejects(c.call('runtime', 'RunPodSandbox', { config: pod }), grpcCode(GrpcStatus.ALREADY_EXISTS, new RegExp(podId)));
    const cfg = containerConfig('dup', ['sleep', '100']);
    const { container_id: first } = await c.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: podId, config: cfg, sandbox_config: pod });
    await assert.rejects(c.call('runtime', 'CreateContainer', { pod_sandbox_id: podId, config: cfg, sandbox_config: pod }), grpcCode(GrpcStatus.ALREADY_EXISTS, new RegExp(first)));
    await assert.rejects(
      c.call('runtime', 'CreateContainer', { pod_sandbox_id: podId, config: containerConfig('rel', ['true'], { mounts: [{ container_path: '/x', host_path: 'relative/dir' }] }), sandbox_config: pod }),
      grpcCode(GrpcStatus.INVALID_ARGUMENT, /absolute/),
    );
    await assert.rejects(c.call('runtime', 'CreateContainer', { pod_sandbox_id: podId, config: { image: { image: BUSYBOX } }, sandbox_config: pod }), grpcCode(GrpcStatus.INVALID_ARGUMENT, /metadata/));
    await assert.rejects(
      c.call('runtime', 'CreateContainer', { pod_sandbox_id: podId, config: containerConfig('noimg', ['true'], { image: { image: 'docker.io/library/absent:1' } }), sandbox_config: pod }),
      grpcCode(GrpcStatus.NOT_FOUND, /not present/),
    );
    await c.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: podId });
  });

  test('stats: cgroup CPU and memory, writable layer, pod network', async () => {
    const c = env.daemon.client;
    const { podId, ctrId } = await runPodWith(env, ['sh', '-c', 'head -c 300000 /dev/zero > /tmp/fill; while true; do sleep 0.1; done']);
    type U = { value: number } | null;
    const { stats } = await waitFor('writable layer usage', async () => {
      const r = await c.call<{ stats: { cpu: { usage_core_nano_seconds: U }; memory: { working_set_bytes: U }; writable_layer: { used_bytes: U } } }>('runtime', 'ContainerStats', { container_id: ctrId });
      return (r.stats.writable_layer.used_bytes?.value ?? 0) >= 300000 ? r : undefined;
    });
    assert.ok((stats.cpu.usage_core_nano_seconds?.value ?? 0) > 0);
    assert.ok((stats.memory.working_set_bytes?.value ?? 0) > 0);
    const pod = await c.call<{ stats: { linux: { process: { process_count: U }; network: { interfaces: Array<{ name: string }> }; containers: unknown[] } } }>('runtime', 'PodSandboxStats', { pod_sandbox_id: podId });
    assert.ok((pod.stats.linux.process.process_count?.value ?? 0) >= 1);
    assert.ok(pod.stats.linux.network.interfaces.some((i) => i.name === 'eth0'));
    assert.equal(pod.stats.linux.containers.length, 1);
    const list = await c.call<{ stats: Array<{ attributes: { id: string } }> }>('runtime', 'ListContainerStats', { filter: { pod_sandbox_id: podId } });
    assert.deepEqual(list.stats.map((s) => s.attributes.id), [ctrId]);
    await c.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: podId });
  });

  test('list filters and CLI-owned objects stay out of unfiltered lists', async () => {
    const c = env.daemon.client;
    const a = await runPodWith(env, ['sleep', '100'], { hostNetwork: true, pod: { labels: { app: 'a' } } });
    const b = await runPodWith(env, ['true'], { hostNetwork: true, pod: { labels: { app: 'b' } } });
    await waitExited(env.daemon, b.ctrId);
    const byLabel = await c.call<{ items: Array<{ id: string }> }>('runtime', 'ListPodSandbox', { filter: { label_selector: { app: 'a' } } });
    assert.deepEqual(byLabel.items.map((p) => p.id), [a.podId]);
    const byPrefix = await c.call<{ items: Array<{ id: string }> }>('runtime', 'ListPodSandbox', { filter: { id: b.podId.slice(0, 12) } });
    assert.deepEqual(byPrefix.items.map((p) => p.id), [b.podId]);
    const running = await c.call<{ containers: Array<{ id: string }> }>('runtime', 'ListContainers', { filter: { state: { state: 'CONTAINER_RUNNING' } } });
    assert.ok(running.containers.some((x) => x.id === a.ctrId));
    assert.ok(!running.containers.some((x) => x.id === b.ctrId));
    const streamed = await c.stream<{ pod_sandboxes: Array<{ id: string }> }>('runtime', 'StreamPodSandboxes', { filter: { label_selector: { app: 'b' } } });
    assert.deepEqual(streamed.flatMap((m) => m.pod_sandboxes.map((p) => p.id)), [b.podId]);
    const streamedCtrs = await c.stream<{ containers: Array<{ id: string }> }>('runtime', 'StreamContainers', { filter: { pod_sandbox_id: a.podId } });
    assert.deepEqual(streamedCtrs.flatMap((m) => m.containers.map((x) => x.id)), [a.ctrId]);
    const cli = await c.call<{ items: unknown[] }>('runtime', 'ListPodSandbox', { filter: { label_selector: { 'io.berth.owner': 'cli' } } });
    assert.equal(cli.items.length, 0);
    const status = await c.call<{ status: { id: string } }>('runtime', 'PodSandboxStatus', { pod_sandbox_id: a.podId.slice(0, 10) });
    assert.equal(status.status.id, a.podId);
    for (const p of [a, b]) await c.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: p.podId });
  });

  test('handler crun is chosen and its failure is reported with its own message', async (t) => {
    const c = env.daemon.client;
    const pod = podConfig(env, {}, { hostNetwork: true });
    const { pod_sandbox_id: podId } = await c.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: pod, runtime_handler: 'crun' });
    t.after(() => c.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: podId }));
    const { status } = await c.call<{ status: { runtime_handler: string } }>('runtime', 'PodSandboxStatus', { pod_sandbox_id: podId });
    assert.equal(status.runtime_handler, 'crun');
    try {
      const { container_id: id } = await c.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: podId, config: containerConfig('x', ['true']), sandbox_config: pod });
      // A host where crun works: the container must really run on it.
      const info = await containerStatus(env.daemon, id, true);
      assert.equal(JSON.parse(info.info.info ?? '{}').runtimeHandler, 'crun');
    } catch (err) {
      const e = err as { code: number; details: string };
      assert.equal(e.code, GrpcStatus.FAILED_PRECONDITION, e.details);
      assert.match(e.details, /^crun create [0-9a-f]{64} \(under conmon\) failed: /);
    }
  });

  test('image VOLUMEs are seeded from the image, owner and mode kept', async () => {
    const c = env.daemon.client;
    const { podId, ctrId } = await runPodWith(env, ['sh', '-c', 'while true; do sleep 0.1; done'], {
      hostNetwork: true,
      container: { image: { image: 'docker.io/library/withvol:latest' } },
    });
    const ex = await c.call<{ stdout: Buffer; exit_code: number }>('runtime', 'ExecSync', { container_id: ctrId, cmd: ['sh', '-c', 'stat -c "%u %a" /var/www; cat /var/www/index.html; echo new > /var/www/x; mount | grep -c " /var/www "'], timeout: 10 });
    assert.equal(ex.stdout.toString(), '33 750\nseed\n1\n');
    await c.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: podId });
  });

  test('GetContainerEvents streams created, started, stopped and deleted, and ends when the client leaves', async () => {
    const call = (env.daemon.client.runtime as unknown as { GetContainerEvents: (req: object) => NodeJS.ReadableStream & { cancel(): void } }).GetContainerEvents({});
    const seen: Array<{ container_id: string; container_event_type: string }> = [];
    call.on('data', (ev: { container_id: string; container_event_type: string }) => seen.push(ev));
    call.on('error', () => undefined);
    await new Promise((r) => setTimeout(r, 100)); // let the subscription register (no event can be missed after this)
    const { podId, ctrId } = await runPodWith(env, ['true'], { hostNetwork: true });
    await waitExited(env.daemon, ctrId);
    await env.daemon.client.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: podId });
    const kinds = await waitFor('four events', async () => {
      const k = seen.filter((e) => e.container_id === ctrId).map((e) => e.container_event_type);
      return k.length >= 4 ? k : undefined;
    });
    assert.deepEqual(kinds, ['CONTAINER_CREATED_EVENT', 'CONTAINER_STARTED_EVENT', 'CONTAINER_STOPPED_EVENT', 'CONTAINER_DELETED_EVENT']);
    call.cancel();
  });
});
