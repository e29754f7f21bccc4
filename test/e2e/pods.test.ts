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
    env = await startPodEnv();
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
});
