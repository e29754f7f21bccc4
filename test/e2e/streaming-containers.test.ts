// Exec, attach and port-forward against real containers in a real berthd (runc under conmon, CNI
// networking), driven by berth's own SPDY and WebSocket client as crictl and kubectl would.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { until } from '../helpers/poll.ts';
import { startPodEnv, runPodWith, type PodEnv } from '../helpers/pods.ts';
import { collect, connectSpdy, connectWebSocket, exitCodeOf, spdyCommand, spdyForward, startSpdyCommand, wsCommand } from '../helpers/streaming-client.ts';

const root = process.getuid?.() === 0;
let env: PodEnv | undefined;
let ctrId = '';
let podId = '';

before(async () => {
  if (!root) return;
  // A state dir deep enough that <state>/attach/<container id>/attach passes the 108-byte limit of
  // a unix socket path: attach must still reach conmon's socket.
  env = await startPodEnv({ network: { subnetPrefix: '10.230', bridgePrefix: 'bsx' }, stateName: `state-${'x'.repeat(40)}` });
  // Serves one line per connection on 8080 inside the pod's network namespace only.
  ({ ctrId, podId } = await runPodWith(env, ['sh', '-c', 'while true; do echo hello-from-pod | nc -l -p 8080; done']));
});

after(async () => {
  await env?.dispose();
});

const skip = !root && 'needs root (runc, CNI)';
const call = <T>(method: string, req: object): Promise<T> => (env as PodEnv).daemon.client.call<T>('runtime', method, req);
const execUrl = async (req: object): Promise<string> => (await call<{ url: string }>('Exec', { container_id: ctrId, ...req })).url;

test('exec without a tty: stdout, stderr and the exit code reach the client', { skip }, async () => {
  const r = await spdyCommand(await execUrl({ cmd: ['sh', '-c', 'echo out; echo err >&2; exit 3'], stdout: true, stderr: true }), {});
  assert.equal(r.stdout.toString(), 'out\n');
  assert.equal(r.stderr.toString(), 'err\n');
  assert.equal(r.exitCode, 3);
  const ok = await spdyCommand(await execUrl({ cmd: ['echo', 'hello'], stdout: true, stderr: true }), {});
  assert.equal(ok.stdout.toString(), 'hello\n');
  assert.equal(ok.exitCode, 0);
});

test('exec with stdin: the bytes arrive and EOF ends the command', { skip }, async () => {
  const input = Buffer.alloc(256 * 1024, 'y');
  const r = await spdyCommand(await execUrl({ cmd: ['wc', '-c'], stdin: true, stdout: true, stderr: true }), { stdin: input });
  assert.equal(r.stdout.toString().trim(), String(input.length));
  assert.equal(r.exitCode, 0);
});

test('exec with a tty: a terminal in the container, output with CRLF, resize applied', { skip }, async () => {
  // What critest checks, several times: a short command's output must not be translated twice.
  for (let i = 0; i < 5; i++) {
    const hello = await spdyCommand(await execUrl({ cmd: ['echo', 'hello'], tty: true, stdin: true, stdout: true }), { tty: true, stdin: true });
    assert.equal(hello.stdout.toString(), 'hello\r\n');
    assert.equal(hello.exitCode, 0);
  }
  const script = 'for i in $(seq 200); do s=$(stty size 2>/dev/null); [ "$s" = "37 101" ] && break; sleep 0.05; done; echo "size $s"; tty; exit 4';
  const r = await spdyCommand(await execUrl({ cmd: ['sh', '-c', script], tty: true, stdin: true, stdout: true }), {
    tty: true,
    stdin: true,
    resize: [{ width: 101, height: 37 }],
  });
  assert.match(r.stdout.toString(), /size 37 101\r\n\/dev\/pts\/\d+\r\n/);
  assert.equal(r.exitCode, 4);
});

test('exec over WebSocket v5', { skip }, async () => {
  const r = await wsCommand(await execUrl({ cmd: ['sh', '-c', 'cat; exit 2'], stdin: true, stdout: true, stderr: true }), { stdin: Buffer.from('via websocket\n') });
  assert.equal(r.stdout.toString(), 'via websocket\n');
  assert.equal(r.exitCode, 2);
});

test('a client that leaves mid-exec leaves no process in the container', { skip }, async () => {
  const cmd = await startSpdyCommand(await execUrl({ cmd: ['sh', '-c', 'echo started; exec sleep 4242'], stdin: true, stdout: true, stderr: true }), { stdin: true });
  await until('the exec to start', () => cmd.stdoutSoFar().includes('started'));
  cmd.session.destroy();
  await cmd.done.catch(() => {});
  let listing = '';
  await until('the abandoned exec process to be gone', async () => {
    const ps = await call<{ stdout: Buffer; exit_code: number }>('ExecSync', { container_id: ctrId, cmd: ['ps'], timeout: 10 });
    listing = ps.stdout.toString();
    return !listing.includes('sleep 4242');
  }).catch((err: Error) => {
    throw new Error(`${err.message}; ps shows:\n${listing}`);
  });
});

/** Whether `ps` in the container lists `what`. */
async function containerRuns(what: string): Promise<boolean> {
  const ps = await call<{ stdout: Buffer }>('ExecSync', { container_id: ctrId, cmd: ['ps'], timeout: 10 });
  return ps.stdout.toString().includes(what);
}

test('exec starts the process during the handshake; its output waits for the streams', { skip }, async () => {
  const marker = `/tmp/early-${process.pid}`;
  const url = await execUrl({ cmd: ['sh', '-c', `touch ${marker}; echo before-streams; exec sleep 0`], stdout: true, stderr: true });
  const { session } = await connectSpdy(url, ['v4.channel.k8s.io']);
  try {
    // Upgraded, no stream opened yet: the command runs (and writes) all the same.
    await until('the command to run before any stream is open', async () => (await call<{ exit_code: number }>('ExecSync', { container_id: ctrId, cmd: ['test', '-e', marker], timeout: 10 })).exit_code === 0);
    const error = session.openStream({ streamtype: 'error' });
    const stdout = session.openStream({ streamtype: 'stdout' });
    const stderr = session.openStream({ streamtype: 'stderr' });
    for (const s of [error, stdout, stderr]) s.end();
    const [out, , status] = await Promise.all([collect(stdout), collect(stderr), collect(error)]);
    assert.equal(out.toString(), 'before-streams\n');
    assert.equal(exitCodeOf(status.toString()), 0);
  } finally {
    session.destroy();
    await call('ExecSync', { container_id: ctrId, cmd: ['rm', '-f', marker], timeout: 10 });
  }
});

test('a client that upgrades and leaves before opening its streams leaves no process in the container', { skip }, async () => {
  const url = await execUrl({ cmd: ['sleep', '4343'], stdin: true, stdout: true, stderr: true });
  const { session } = await connectSpdy(url, ['v4.channel.k8s.io']);
  try {
    await until('the exec to start', () => containerRuns('sleep 4343'));
  } finally {
    session.destroy();
  }
  await until('the abandoned exec process to be gone', async () => !(await containerRuns('sleep 4343')));
});

test('attach joins the container stdio; detaching leaves it running', { skip }, async () => {
  const e = env as PodEnv;
  const { ctrId: echoId } = await runPodWith(e, ['sh', '-c', 'while read l; do echo "got $l"; done'], { container: { stdin: true } });
  const { url } = await call<{ url: string }>('Attach', { container_id: echoId, stdin: true, stdout: true, stderr: true });
  const cmd = await startSpdyCommand(url, { stdin: true });
  cmd.stdin?.write('one\n');
  await until('attach output over SPDY', () => cmd.stdoutSoFar().includes('got one'));
  cmd.session.destroy();
  await cmd.done.catch(() => {});
  const st = await call<{ status: { state: string } }>('ContainerStatus', { container_id: echoId });
  assert.equal(st.status.state, 'CONTAINER_RUNNING');

  const again = await call<{ url: string }>('Attach', { container_id: echoId, stdin: true, stdout: true, stderr: false });
  const { ws, onMessage } = await connectWebSocket(again.url, ['v5.channel.k8s.io']);
  let text = '';
  onMessage((m: Buffer) => {
    if (m[0] === 1) text += m.subarray(1).toString();
  });
  ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('two\n')]));
  await until('attach output over WebSocket', () => text.includes('got two'));
  ws.close();
});

test('port-forward reaches a port inside the pod; a refused port reports an error', { skip }, async () => {
  const { url } = await call<{ url: string }>('PortForward', { pod_sandbox_id: podId, port: [8080] });
  const { session } = await connectSpdy(url, ['portforward.k8s.io']);
  try {
    let got = '';
    await until('a line from the server in the pod', async () => {
      const { data } = await spdyForward(session, 8080, Date.now());
      got = (await collect(data)).toString();
      data.destroy();
      return got === 'hello-from-pod\n';
    });
    const refused = await spdyForward(session, 8081, 1);
    refused.data.resume();
    assert.match(await refused.errorText, /error forwarding port 8081 to pod .*ECONNREFUSED/);
  } finally {
    session.destroy();
  }
});

test('each container execs with its own process spec, also after a resource update and in a container made after one was removed', { skip }, async () => {
  // berthd keeps a container's process spec after its first exec: it must never serve another's.
  const who = async (id: string): Promise<string> =>
    (await spdyCommand((await call<{ url: string }>('Exec', { container_id: id, cmd: ['sh', '-c', 'echo "$WHO $(id -u)"'], stdout: true, stderr: true })).url, {})).stdout.toString();
  const pods: string[] = [];
  try {
    const start = async (name: string, uid: number): Promise<string> => {
      const r = await runPodWith(env as PodEnv, ['sleep', '3600'], { container: { envs: [{ key: 'WHO', value: Buffer.from(name) }], linux: { security_context: { run_as_user: { value: uid } } } } });
      pods.push(r.podId);
      return r.ctrId;
    };
    const a = await start('a', 1001);
    const b = await start('b', 1002);
    for (let i = 0; i < 2; i++) {
      assert.equal(await who(a), 'a 1001\n');
      assert.equal(await who(b), 'b 1002\n');
    }
    await call('UpdateContainerResources', { container_id: a, linux: { cpu_shares: 512 } });
    assert.equal(await who(a), 'a 1001\n');
    await call('StopPodSandbox', { pod_sandbox_id: pods[0] });
    await call('RemovePodSandbox', { pod_sandbox_id: pods.shift() });
    const c = await start('c', 1003);
    assert.equal(await who(c), 'c 1003\n');
    assert.equal(await who(b), 'b 1002\n');
  } finally {
    for (const id of pods) {
      await call('StopPodSandbox', { pod_sandbox_id: id }).catch(() => {});
      await call('RemovePodSandbox', { pod_sandbox_id: id }).catch(() => {});
    }
  }
});
