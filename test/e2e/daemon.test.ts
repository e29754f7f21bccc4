// berthd as a process: flags, config, the root lock, the runtime RPCs, UNIMPLEMENTED answers and
// clean shutdown, all through the real socket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { stat, access, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as connectHttp2 } from 'node:http2';
import { connect } from 'node:net';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { BERTHD, startDaemon, type TestDaemon } from '../helpers/daemon.ts';

test('Version, Status and RuntimeConfig answer over the socket', async (t) => {
  const d = await startDaemon({
    config: [
      'cgroup_driver = "systemd"',
      '[network]',
      'cni_conf_dir = "/nonexistent/cni"',
      'cni_bin_dirs = ["/nonexistent/cni-bin"]',
      '[registry.hosts."docker.io"]',
      'mirrors = ["http://localhost:5000"]',
      'username = "alice"',
      'password = "hunter2-secret"',
    ].join('\n'),
  });
  t.after(() => d.dispose());

  const version = await d.client.call<{ runtime_name: string; runtime_api_version: string; runtime_version: string }>('runtime', 'Version', { version: 'v1' });
  assert.equal(version.runtime_name, 'berth');
  assert.equal(version.runtime_api_version, 'v1');
  assert.match(version.runtime_version, /^\d+\.\d+\.\d+/);

  const st = await d.client.call<{ status: { conditions: Array<{ type: string; status: boolean; reason: string; message: string }> } }>('runtime', 'Status', {});
  const network = st.status.conditions.find((c) => c.type === 'NetworkReady');
  assert.ok(network, 'NetworkReady condition present');
  assert.equal(network.status, false);
  assert.equal(network.reason, 'NetworkPluginNotReady');
  assert.match(network.message, /CNI plugin "bridge" not found in \/nonexistent\/cni-bin/);
  const runtime = st.status.conditions.find((c) => c.type === 'RuntimeReady');
  assert.equal(runtime?.status, true, `runc should be found: ${runtime?.message}`);

  const verbose = await d.client.call<{ info: Record<string, string> }>('runtime', 'Status', { verbose: true });
  const shown = verbose.info.config ?? '';
  assert.match(shown, /localhost:5000/, 'verbose Status shows the mirrors');
  assert.doesNotMatch(shown, /hunter2-secret|alice/, 'but never credentials');

  const rc = await d.client.call<{ linux: { cgroup_driver: string } }>('runtime', 'RuntimeConfig', {});
  assert.equal(rc.linux.cgroup_driver, 'SYSTEMD');

  const mode = (await stat(d.socket)).mode & 0o777;
  assert.equal(mode, 0o660);
});

test('RPCs not built yet answer UNIMPLEMENTED naming themselves, and the daemon keeps serving', async (t) => {
  const d = await startDaemon();
  t.after(() => d.dispose());
  for (const rpc of ['CheckpointContainer', 'ListMetricDescriptors']) {
    await assert.rejects(d.client.call('runtime', rpc, {}), (err: { code: number; details: string }) => {
      assert.equal(err.code, GrpcStatus.UNIMPLEMENTED, `${rpc}: ${err.details}`);
      assert.match(err.details, new RegExp(`RuntimeService\\.${rpc}`));
      return true;
    });
  }
  const v = await d.client.call<{ runtime_name: string }>('runtime', 'Version', {});
  assert.equal(v.runtime_name, 'berth');
});

test('a second daemon on the same root refuses to start; two roots run side by side', async (t) => {
  const first = await startDaemon();
  t.after(() => first.dispose());
  const second = spawnSync(process.execPath, [BERTHD, '--root', first.root, '--state', `${first.state}-2`, '--socket', `${first.socket}-2`], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(second.status, 1);
  assert.match(second.stderr, /another berthd \(pid \d+\) is already using root/);

  const other = await startDaemon();
  t.after(() => other.dispose());
  const [a, b] = await Promise.all([first.client.call('runtime', 'Version', {}), other.client.call('runtime', 'Version', {})]);
  assert.deepEqual(a, b);
});

test('SIGTERM shuts down cleanly: exit 0, socket removed; after kill -9 the next start gets the root', async (t) => {
  const d = await startDaemon();
  t.after(() => d.dispose());
  assert.equal(await d.stop('SIGTERM'), 0);
  await assert.rejects(access(d.socket));
  assert.match(d.logs(), /"msg":"stopped"/);

  const killed = await startDaemon({ root: d.root });
  assert.equal(await killed.stop('SIGKILL'), 'SIGKILL');
  const again = await startDaemon({ root: d.root });
  t.after(async () => {
    await killed.dispose();
    await again.dispose();
  });
  const v = await again.client.call<{ runtime_name: string }>('runtime', 'Version', {});
  assert.equal(v.runtime_name, 'berth');
});

test('--help says what happens to --state, and it does: the state dir survives a daemon restart', async (t) => {
  const help = spawnSync(process.execPath, [BERTHD, '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  assert.match(help.stdout, /--state DIR\s+runtime state, kept across daemon restarts/);
  const first = await startDaemon();
  // Disposed last first: the first's dispose removes the shared state, which must not happen
  // under the second daemon still making its pool of pod namespaces there.
  const daemons = [first];
  t.after(async () => {
    for (const d of daemons.reverse()) await d.dispose();
  });
  await writeFile(join(first.state, 'marker'), 'kept');
  await first.stop();
  daemons.push(await startDaemon({ root: first.root, state: first.state }));
  assert.equal(await readFile(join(first.state, 'marker'), 'utf8'), 'kept');
});

test('bad flags and bad config are refused with a message, not a crash', () => {
  const flag = spawnSync(process.execPath, [BERTHD, '--no-such-flag'], { encoding: 'utf8' });
  assert.equal(flag.status, 2);
  assert.match(flag.stderr, /no-such-flag/);

  const help = spawnSync(process.execPath, [BERTHD, '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  for (const f of ['--config', '--root', '--state', '--socket', '--log-level']) assert.ok(help.stdout.includes(f), `help lists ${f}`);

  const missing = spawnSync(process.execPath, [BERTHD, '--config', '/nonexistent/berth.toml'], { encoding: 'utf8' });
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /cannot read config \/nonexistent\/berth.toml/);
});

for (const [who, authorityOf] of [
  ['clients that send the socket path as :authority (Go gRPC, kubelet 1.26–1.30)', (d: TestDaemon) => d.socket],
  // The rewriter passes such a connection through unparsed after its first header block.
  ['clients that send a valid :authority, on a connection whose later calls use HPACK indexing,', () => 'localhost'],
] as const) test(`${who} are served`, async (t) => {
  const d = await startDaemon();
  t.after(() => d.dispose());
  const session = connectHttp2('http://localhost', { createConnection: () => connect(d.socket) });
  t.after(() => session.close());
  // Several calls on one connection, so HPACK state across header blocks is exercised too.
  for (let i = 0; i < 3; i++) {
    const req = session.request({
      ':method': 'POST',
      ':path': '/runtime.v1.RuntimeService/Version',
      ':authority': authorityOf(d),
      'content-type': 'application/grpc',
      'user-agent': `grpc-go/1.51.0 call-${i}`,
      te: 'trailers',
    });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    const trailers = new Promise<Record<string, unknown>>((resolve, reject) => {
      req.on('trailers', (h) => resolve(h));
      req.on('error', reject);
      req.on('close', () => reject(new Error(`stream closed without trailers (rst code ${req.rstCode})`)));
    });
    // gRPC framing: no compression flag, 4-byte length, empty VersionRequest.
    req.end(Buffer.from([0, 0, 0, 0, 0]));
    const tr = await trailers;
    assert.equal(tr['grpc-status'], '0', `call ${i}: ${String(tr['grpc-message'])}`);
    assert.ok(Buffer.concat(chunks).includes(Buffer.from('berth')), 'the response names the runtime');
  }
});

// The first start on an empty compile cache has to load Node's TypeScript stripper; berthd then
// writes the cache and starts again from it (same pid), so the stripper does not stay resident.
test('a start on an empty compile cache fills it and restarts from it; the next start uses it as is', async (t) => {
  const cacheDir = await mkdtemp(join(tmpdir(), 'berth-compile-cache-'));
  t.after(() => rm(cacheDir, { recursive: true, force: true }));
  const environ = async (pid: number): Promise<string[]> => (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0');

  const cold = await startDaemon({ env: { NODE_COMPILE_CACHE: cacheDir } });
  t.after(() => cold.dispose());
  const pid = cold.child.pid as number;
  assert.ok((await environ(pid)).includes('BERTHD_WARM=1'), 'the serving process is the restart from the filled cache');
  // Named in the environment, so the unpack worker thread starts from the cache too.
  assert.ok((await environ(pid)).includes(`NODE_COMPILE_CACHE=${cacheDir}`));
  assert.ok((await readdir(cacheDir, { recursive: true })).length > 1, 'the cache was written');
  await cold.dispose();

  const warm = await startDaemon({ env: { NODE_COMPILE_CACHE: cacheDir } });
  t.after(() => warm.dispose());
  assert.ok(!(await environ(warm.child.pid as number)).includes('BERTHD_WARM=1'), 'a warm start does not restart');
  const version = await warm.client.call<{ runtime_name: string }>('runtime', 'Version', {});
  assert.equal(version.runtime_name, 'berth');
});
