// The streaming side of a real berthd: Exec, Attach and PortForward validate their requests and
// look up their target before handing out a URL, and the streaming server runs where the config
// puts it. Sessions against real containers are in streaming-containers.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { startDaemon } from '../helpers/daemon.ts';

type GrpcError = { code: number; details: string };

function expectCode(code: number, pattern: RegExp): (err: GrpcError) => boolean {
  return (err) => {
    assert.equal(err.code, code, err.details);
    assert.match(err.details, pattern);
    return true;
  };
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

test('Exec, Attach and PortForward refuse bad requests and unknown targets with the right codes', async (t) => {
  const d = await startDaemon();
  t.after(() => d.dispose());
  const call = (method: string, req: object): Promise<unknown> => d.client.call('runtime', method, req);
  await assert.rejects(call('Exec', { container_id: '', cmd: ['ls'], stdout: true }), expectCode(GrpcStatus.INVALID_ARGUMENT, /container_id/));
  await assert.rejects(call('Exec', { container_id: 'abc', cmd: [], stdout: true }), expectCode(GrpcStatus.INVALID_ARGUMENT, /cmd is empty/));
  await assert.rejects(call('Exec', { container_id: 'abc', cmd: ['ls'] }), expectCode(GrpcStatus.INVALID_ARGUMENT, /at least one of stdin, stdout and stderr/));
  await assert.rejects(call('Exec', { container_id: 'abc', cmd: ['sh'], tty: true, stdout: true, stderr: true }), expectCode(GrpcStatus.INVALID_ARGUMENT, /tty cannot also have stderr/));
  await assert.rejects(call('Exec', { container_id: 'abc', cmd: ['ls'], stdout: true }), expectCode(GrpcStatus.NOT_FOUND, /container "abc" not found/));
  await assert.rejects(call('Attach', { container_id: 'abc', stdout: true }), expectCode(GrpcStatus.NOT_FOUND, /container "abc" not found/));
  await assert.rejects(call('PortForward', { pod_sandbox_id: 'p1', port: [0] }), expectCode(GrpcStatus.INVALID_ARGUMENT, /port 0/));
  await assert.rejects(call('PortForward', { pod_sandbox_id: 'p1', port: [80] }), expectCode(GrpcStatus.NOT_FOUND, /p1.*not found|not found.*p1/));
  // Still serving after all that.
  await call('Version', {});
});

test('the streaming server listens where [streaming] says and refuses unknown tokens with 404', async (t) => {
  const port = await freePort();
  const d = await startDaemon({ config: `[streaming]\naddress = "127.0.0.1"\nport = ${port}\nidle_timeout = 60\n` });
  t.after(() => d.dispose());
  assert.match(d.logs(), new RegExp(`"streaming":"http://127\\.0\\.0\\.1:${port}"`));
  const status = await new Promise<number>((resolve, reject) => {
    request(`http://127.0.0.1:${port}/exec/some-token`, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject).end();
  });
  assert.equal(status, 404);
});

test('a streaming TLS key that cannot be read stops berthd at start, naming the key', async () => {
  await assert.rejects(
    startDaemon({ config: '[streaming]\ntls_cert = "/nonexistent/c.pem"\ntls_key = "/nonexistent/k.pem"\n' }),
    /cannot read streaming\.tls_cert \/nonexistent\/c\.pem/,
  );
});
