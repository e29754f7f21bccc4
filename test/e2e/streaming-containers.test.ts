// Exec, attach and port-forward against real containers in a real berthd (runc under conmon, CNI
// networking), driven by berth's own SPDY and WebSocket client as crictl and kubectl would.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startPodEnv, runPodWith, type PodEnv } from '../helpers/pods.ts';
import { collect, connectSpdy, connectWebSocket, spdyCommand, spdyForward, startSpdyCommand, wsCommand } from '../helpers/streaming-client.ts';

const root = process.getuid?.() === 0;
let env: PodEnv | undefined;
let ctrId = '';
let podId = '';

before(async () => {
  if (!root) return;
  env = await startPodEnv({ network: { subnetPrefix: '10.230', bridgePrefix: 'bsx' } });
  // Serves one line per connection on 8080 inside the pod's network namespace only.
  ({ ctrId, podId } = await runPodWith(env, ['sh', '-c', 'while true; do echo hello-from-pod | nc -l -p 8080; done']));
});

after(async () => {
  await env?.dispose();
});

const skip = !root && 'needs root (runc, CNI)';
const call = <T>(method: string, req: object): Promise<T> => (env as PodEnv).daemon.client.call<T>('runtime', method, req);
const execUrl = async (req: object): Promise<string> => (await call<{ url: string }>('Exec', { container_id: ctrId, ...req })).url;

async function until(check: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

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
  await until(() => cmd.stdoutSoFar().includes('started'), 'the exec to start');
  cmd.session.destroy();
  await cmd.done.catch(() => {});
  let listing = '';
  await until(async () => {
    const ps = await call<{ stdout: Buffer; exit_code: number }>('ExecSync', { container_id: ctrId, cmd: ['ps'], timeout: 10 });
    listing = ps.stdout.toString();
    return !listing.includes('sleep 4242');
  }, 'the abandoned exec process to be gone').catch((err: Error) => {
    throw new Error(`${err.message}; ps shows:\n${listing}`);
  });
});

test('attach joins the container stdio; detaching leaves it running', { skip }, async () => {
  const e = env as PodEnv;
  const { ctrId: echoId } = await runPodWith(e, ['sh', '-c', 'while read l; do echo "got $l"; done'], { container: { stdin: true } });
  const { url } = await call<{ url: string }>('Attach', { container_id: echoId, stdin: true, stdout: true, stderr: true });
  const cmd = await startSpdyCommand(url, { stdin: true });
  cmd.stdin?.write('one\n');
  await until(() => cmd.stdoutSoFar().includes('got one'), 'attach output over SPDY');
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
  await until(() => text.includes('got two'), 'attach output over WebSocket');
  ws.close();
});

test('port-forward reaches a port inside the pod; a refused port reports an error', { skip }, async () => {
  const { url } = await call<{ url: string }>('PortForward', { pod_sandbox_id: podId, port: [8080] });
  const { session } = await connectSpdy(url, ['portforward.k8s.io']);
  try {
    let got = '';
    await until(async () => {
      const { data } = await spdyForward(session, 8080, Date.now());
      got = (await collect(data)).toString();
      data.destroy();
      return got === 'hello-from-pod\n';
    }, 'a line from the server in the pod');
    const refused = await spdyForward(session, 8081, 1);
    refused.data.resume();
    assert.match(await refused.errorText, /error forwarding port 8081 to pod .*ECONNREFUSED/);
  } finally {
    session.destroy();
  }
});
