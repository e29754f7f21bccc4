// The streaming server end to end at the protocol level: berth's client over SPDY and WebSocket,
// against real host processes (a real pty for tty sessions) and real TCP listeners.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { request } from 'node:http';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { until } from '../helpers/poll.ts';
import { pino } from 'pino';
import { StreamingServer, type ExecParams } from '../../src/streaming/server.ts';
import { HostBackend } from '../helpers/host-backend.ts';
import {
  collect,
  connectSpdy,
  connectWebSocket,
  spdyCommand,
  spdyForward,
  startSpdyCommand,
  refusal,
  wsCommand,
} from '../helpers/streaming-client.ts';

const log = pino({ level: 'silent' });
const BUSYBOX = '/bin/busybox';
const backend = new HostBackend();
let server: StreamingServer;

before(async () => {
  server = await StreamingServer.start({ address: '127.0.0.1', port: 0, idleTimeoutMs: 0 }, backend, log);
});
after(async () => {
  await server.stop();
  await backend.stopAll();
});

const plain: ExecParams = { containerId: 'c1', cmd: [], tty: false, stdin: false, stdout: true, stderr: true };
const sh = (script: string): string[] => [BUSYBOX, 'sh', '-c', script];

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function tcpServer(onConn: (s: Socket) => void): Promise<{ port: number; server: Server }> {
  const srv = createServer(onConn);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { port: (srv.address() as { port: number }).port, server: srv };
}

test('SPDY exec without tty: stdout and stderr apart, the exit code in a v4 Status', async () => {
  const r = await spdyCommand(server.execUrl({ ...plain, cmd: sh('echo out; echo err >&2; exit 7') }), {});
  assert.equal(r.stdout.toString(), 'out\n');
  assert.equal(r.stderr.toString(), 'err\n');
  assert.equal(r.exitCode, 7);
  const status = JSON.parse(r.error) as { reason: string; details: { causes: Array<{ reason: string; message: string }> } };
  assert.equal(status.reason, 'NonZeroExitCode');
  assert.deepEqual(status.details.causes, [{ reason: 'ExitCode', message: '7' }]);
  const ok = await spdyCommand(server.execUrl({ ...plain, cmd: ['echo', 'hello'] }), {});
  assert.equal(ok.stdout.toString(), 'hello\n');
  assert.deepEqual(JSON.parse(ok.error), { metadata: {}, status: 'Success' });
});

test('SPDY exec: stdin reaches the process and its EOF closes the process stdin', async () => {
  const input = Buffer.alloc(1024 * 1024, 'x');
  const r = await spdyCommand(server.execUrl({ ...plain, stdin: true, cmd: sh('wc -c; exit 0') }), { stdin: input });
  assert.equal(r.stdout.toString().trim(), String(input.length));
  assert.equal(r.exitCode, 0);
});

test('SPDY exec with a tty: one output stream, a real terminal, resizes applied', async () => {
  const script = 'for i in $(seq 500); do s=$(stty size); [ "$s" = "40 132" ] && break; sleep 0.02; done; echo "size $s"; tty';
  const r = await spdyCommand(server.execUrl({ ...plain, stderr: false, tty: true, stdin: true, cmd: ['sh', '-c', script] }), {
    tty: true,
    stdin: Buffer.alloc(0),
    resize: [{ width: 132, height: 40 }],
  });
  const out = r.stdout.toString();
  assert.match(out, /size 40 132\r\n/);
  assert.match(out, /\/dev\/pts\/\d+/);
  assert.equal(r.stderr.length, 0);
  assert.equal(r.exitCode, 0);
});

test('older remotecommand versions: v3 and v2 report failure as text, v1 is still served', async () => {
  const v3 = await spdyCommand(server.execUrl({ ...plain, cmd: sh('echo v3; exit 2') }), { protocols: ['v3.channel.k8s.io'] });
  assert.equal(v3.stdout.toString(), 'v3\n');
  assert.equal(v3.error, 'command terminated with non-zero exit code: exit status 2');
  const v2ok = await spdyCommand(server.execUrl({ ...plain, cmd: ['echo', 'v2'] }), { protocols: ['v2.channel.k8s.io'] });
  assert.equal(v2ok.error, '');
  const v1 = await spdyCommand(server.execUrl({ ...plain, cmd: ['echo', 'v1'] }), { protocols: ['channel.k8s.io'] });
  assert.equal(v1.stdout.toString(), 'v1\n');
});

test('the client protocol list is matched in the client order; unknown protocols get 403, none 400', async () => {
  const { session, protocol } = await connectSpdy(server.execUrl({ ...plain, cmd: ['true'] }), ['v9.channel.k8s.io', 'v3.channel.k8s.io, v4.channel.k8s.io']);
  assert.equal(protocol, 'v3.channel.k8s.io');
  session.destroy();
  const refused = await refusal(connectSpdy(server.execUrl({ ...plain, cmd: ['true'] }), ['v9.channel.k8s.io']));
  assert.equal(refused.status, 403);
  assert.match(String(refused.headers['x-accepted-stream-protocol-versions']), /v4\.channel\.k8s\.io/);
  const none = await refusal(connectSpdy(server.execUrl({ ...plain, cmd: ['true'] }), []));
  assert.equal(none.status, 400);
  assert.match(none.body, /X-Stream-Protocol-Version is required/);
});

test('tokens work once; unknown, reused and wrong-kind tokens get 404; plain GET gets 400', async () => {
  const url = server.execUrl({ ...plain, cmd: ['echo', 'once'] });
  assert.equal((await spdyCommand(url, {})).stdout.toString(), 'once\n');
  const reused = await refusal(connectSpdy(url, ['v4.channel.k8s.io']));
  assert.equal(reused.status, 404);
  assert.match(reused.body, /unknown or expired streaming token/);
  const unknown = await refusal(connectSpdy(`${server.baseUrl}/exec/not-a-token`, ['v4.channel.k8s.io']));
  assert.equal(unknown.status, 404);
  const token = server.execUrl({ ...plain, cmd: ['true'] }).split('/').pop() as string;
  const wrongKind = await refusal(connectSpdy(`${server.baseUrl}/portforward/${token}`, ['portforward.k8s.io']));
  assert.equal(wrongKind.status, 404);
  const status = await new Promise<number>((resolve, reject) => {
    request(server.execUrl({ ...plain, cmd: ['true'] }), (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject).end();
  });
  assert.equal(status, 400);
});

test('a token expires', async () => {
  const short = await StreamingServer.start({ address: '127.0.0.1', port: 0, idleTimeoutMs: 0, tokenTtlMs: 50 }, backend, log);
  try {
    const url = short.execUrl({ ...plain, cmd: ['true'] });
    await sleep(120); // the thing under test is wall-clock expiry itself
    const expired = await refusal(connectSpdy(url, ['v4.channel.k8s.io']));
    assert.equal(expired.status, 404);
  } finally {
    await short.stop();
  }
});

test('bad requests are refused before a URL is made', () => {
  assert.throws(() => server.execUrl({ ...plain, cmd: [] }), /cmd is empty/);
  assert.throws(() => server.execUrl({ ...plain, cmd: ['true'], stdout: false, stderr: false }), /at least one of stdin, stdout and stderr/);
  assert.throws(() => server.execUrl({ ...plain, cmd: ['true'], tty: true }), /tty cannot also have stderr/);
  assert.throws(() => server.execUrl({ ...plain, containerId: 'missing-1', cmd: ['true'] }), { kind: 'not-found' });
  assert.throws(() => server.attachUrl({ ...plain, containerId: 'stopped-1' }), { kind: 'failed-precondition' });
  assert.throws(() => server.portForwardUrl('missing-pod', [80]), { kind: 'not-found' });
});

test('a client that leaves mid-exec: the process is killed, the session is gone', async () => {
  const before = backend.execPids.length;
  const cmd = await startSpdyCommand(server.execUrl({ ...plain, stdin: true, cmd: sh('echo started; cat') }), { stdin: true });
  await until('the exec process', () => backend.execPids.length > before);
  const pid = backend.execPids[backend.execPids.length - 1] as number;
  assert.ok(alive(pid));
  cmd.session.destroy();
  await until('the exec process to be killed', () => !alive(pid));
  await cmd.done.catch(() => {});
});

test('WebSocket exec v5: channel framing, stdin closed with the close signal, exit code', async () => {
  const r = await wsCommand(server.execUrl({ ...plain, stdin: true, cmd: sh('cat; echo e >&2; exit 3') }), { stdin: Buffer.from('over ws\n') });
  assert.equal(r.stdout.toString(), 'over ws\n');
  assert.equal(r.stderr.toString(), 'e\n');
  assert.equal(r.exitCode, 3);
});

test('WebSocket exec v4 and base64; unknown subprotocols are refused', async () => {
  const v4 = await wsCommand(server.execUrl({ ...plain, cmd: ['echo', 'four'] }), { protocol: 'v4.channel.k8s.io' });
  assert.equal(v4.stdout.toString(), 'four\n');
  assert.equal(v4.exitCode, 0);
  const { ws, protocol, onMessage } = await connectWebSocket(server.execUrl({ ...plain, cmd: ['echo', 'b64'] }), ['v4.base64.channel.k8s.io']);
  assert.equal(protocol, 'v4.base64.channel.k8s.io');
  const messages: string[] = [];
  onMessage((m: Buffer) => messages.push(m.toString()));
  await new Promise<void>((r) => ws.once('close', () => r()));
  const stdout = messages.filter((m) => m.startsWith('1')).map((m) => Buffer.from(m.slice(1), 'base64').toString()).join('');
  assert.equal(stdout, 'b64\n');
  assert.ok(messages.some((m) => m.startsWith('3') && Buffer.from(m.slice(1), 'base64').toString().includes('Success')));
  const refused = await refusal(connectWebSocket(server.execUrl({ ...plain, cmd: ['true'] }), ['v9.channel.k8s.io']));
  assert.equal(refused.status, 400);
});

test('attach over SPDY and WebSocket joins a running process; detaching leaves it running', async () => {
  const proc = backend.startContainer('attach-1', sh('while read l; do echo "got $l"; done'));
  try {
    const cmd = await startSpdyCommand(server.attachUrl({ containerId: 'attach-1', tty: false, stdin: true, stdout: true, stderr: true }), { stdin: true });
    cmd.stdin?.write('one\n');
    await until('attach output over SPDY', () => cmd.stdoutSoFar().includes('got one'));
    cmd.session.destroy();
    await cmd.done.catch(() => {});
    assert.equal(proc.exitCode, null, 'detaching must not stop the container');

    const { ws, onMessage } = await connectWebSocket(server.attachUrl({ containerId: 'attach-1', tty: false, stdin: true, stdout: true, stderr: false }), ['v5.channel.k8s.io']);
    let text = '';
    onMessage((m: Buffer) => {
      if (m[0] === 1) text += m.subarray(1).toString();
    });
    ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('two\n')]));
    await until('attach output over WebSocket', () => text.includes('got two'));
    ws.close();
    await new Promise<void>((r) => ws.once('close', () => r()));
    assert.equal(proc.exitCode, null, 'detaching must not stop the container');
  } finally {
    proc.kill('SIGKILL');
  }
});

test('SPDY port-forward: several connections at once, each its own TCP connection', async () => {
  const { port, server: echo } = await tcpServer((s) => s.pipe(s));
  const url = server.portForwardUrl('pod-1', [port]);
  const { session } = await connectSpdy(url, ['portforward.k8s.io']);
  try {
    const conns = await Promise.all([0, 1, 2].map((i) => spdyForward(session, port, i)));
    const results = conns.map(async ({ data }, i) => {
      const payload = Buffer.alloc(256 * 1024 + i, i + 1);
      const got = collect(data);
      data.end(payload);
      assert.deepEqual(await got, payload);
    });
    await Promise.all(results);
    for (const c of conns) assert.equal(await c.errorText, '');
  } finally {
    session.destroy();
    echo.close();
  }
});

test('SPDY port-forward to a refused port reports on the error stream', async () => {
  const { port, server: probe } = await tcpServer(() => {});
  await new Promise<void>((r) => probe.close(() => r())); // now nothing listens there
  const { session } = await connectSpdy(server.portForwardUrl('pod-1', []), ['portforward.k8s.io']);
  try {
    const { data, errorText } = await spdyForward(session, port, 0);
    data.resume();
    const text = await errorText;
    assert.match(text, new RegExp(`error forwarding port ${port} to pod pod-1`));
    assert.match(text, /ECONNREFUSED/);
  } finally {
    session.destroy();
  }
});

test('SPDY port-forward: streams without a valid port header are reset', async () => {
  const { session } = await connectSpdy(server.portForwardUrl('pod-1', []), ['portforward.k8s.io']);
  try {
    const bad = session.openStream({ streamtype: 'data', port: '70000', requestid: '0' });
    await assert.rejects(bad.replied, /reset/);
  } finally {
    session.destroy();
  }
});

test('WebSocket port-forward: the port prefix on both channels, then the bytes', async () => {
  const { port, server: srv } = await tcpServer((s) => s.end('hello from the pod'));
  try {
    const { ws, onMessage } = await connectWebSocket(`${server.portForwardUrl('pod-1', [])}?port=${port}`, ['v4.channel.k8s.io']);
    const byChannel: Record<number, Buffer[]> = { 0: [], 1: [] };
    onMessage((m: Buffer) => byChannel[m[0] as number]?.push(m.subarray(1)));
    await new Promise<void>((r) => ws.once('close', () => r()));
    const data = Buffer.concat(byChannel[0] as Buffer[]);
    assert.equal(data.readUInt16LE(0), port);
    assert.equal(data.subarray(2).toString(), 'hello from the pod');
    assert.equal(Buffer.concat(byChannel[1] as Buffer[]).readUInt16LE(0), port);
  } finally {
    srv.close();
  }
});

test('stop() cuts live sessions and their processes', async () => {
  const own = await StreamingServer.start({ address: '127.0.0.1', port: 0, idleTimeoutMs: 0 }, backend, log);
  const before = backend.execPids.length;
  const cmd = await startSpdyCommand(own.execUrl({ ...plain, stdin: true, cmd: ['cat'] }), { stdin: true });
  await until('the exec process', () => backend.execPids.length > before);
  const pid = backend.execPids[backend.execPids.length - 1] as number;
  await own.stop();
  await until('the exec process to be killed', () => !alive(pid));
  await cmd.done.catch(() => {});
});

test('idle sessions are closed after the idle timeout', async () => {
  const own = await StreamingServer.start({ address: '127.0.0.1', port: 0, idleTimeoutMs: 200 }, backend, log);
  try {
    const cmd = await startSpdyCommand(own.execUrl({ ...plain, stdin: true, cmd: ['cat'] }), { stdin: true });
    await until('the idle session to close', () => cmd.session.isClosed);
    await cmd.done.catch(() => {});
  } finally {
    await own.stop();
  }
});

test('TLS: the server speaks HTTPS when given a certificate', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-stream-tls-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  } catch {
    t.skip('openssl is not installed');
    return;
  }
  const tls = { cert: await readFile(join(dir, 'cert.pem')), key: await readFile(join(dir, 'key.pem')) };
  const own = await StreamingServer.start({ address: '127.0.0.1', port: 0, idleTimeoutMs: 0, tls }, backend, log);
  try {
    assert.match(own.baseUrl, /^https:\/\/127\.0\.0\.1:\d+$/);
    const r = await spdyCommand(own.execUrl({ ...plain, cmd: ['echo', 'secure'] }), {});
    assert.equal(r.stdout.toString(), 'secure\n');
  } finally {
    await own.stop();
  }
});

test('a hundred sessions, finished or abandoned, leave no file descriptor or process behind', async () => {
  const fds = async (): Promise<number> => (await readdir('/proc/self/fd')).length;
  const one = async (i: number): Promise<void> => {
    if (i % 4 === 3) {
      // Abandoned mid-stream.
      const before = backend.execPids.length;
      const cmd = await startSpdyCommand(server.execUrl({ ...plain, stdin: true, cmd: ['cat'] }), { stdin: true });
      await until('the exec process', () => backend.execPids.length > before);
      cmd.session.destroy();
      await cmd.done.catch(() => {});
    } else if (i % 4 === 2) {
      await wsCommand(server.execUrl({ ...plain, cmd: ['echo', String(i)] }), {});
    } else {
      const r = await spdyCommand(server.execUrl({ ...plain, stdin: true, tty: i % 2 === 1, stderr: i % 2 === 0, cmd: ['echo', String(i)] }), { stdin: Buffer.alloc(0), tty: i % 2 === 1 });
      assert.match(r.stdout.toString(), new RegExp(`^${i}\\r?\\n$`));
    }
  };
  for (let i = 0; i < 8; i++) await one(i); // warm up: lazy modules, first sockets
  const baseline = await fds();
  const firstPid = backend.execPids.length;
  for (let i = 0; i < 100; i++) await one(i);
  await until(`fds back to ${baseline}`, async () => (await fds()) <= baseline);
  await until('every exec process to be gone', () => backend.execPids.slice(firstPid).every((pid) => !alive(pid)));
});
