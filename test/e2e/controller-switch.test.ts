// The kubelet switch end to end, minus the host: a real berthd whose [node] config points
// systemd-run at a recorder script (it records its argv and exits as the test says) or at a script
// that runs the real berth-install on a --host-root fixture (golden kubelet files, systemctl
// recorded), the real node agent, and the fake API server enforcing the rendered RBAC and admission
// policy. The test plays the admin (labels, cordon, drain) and the kubelet (the Node's runtime
// version and Ready heartbeat after a switch or a revert).
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FakeApiServer } from '../helpers/fake-apiserver.ts';
import { startDaemon, type TestDaemon } from '../helpers/daemon.ts';
import { startController, TEST_TIMING, waitFor, type RunningController } from '../helpers/controller.ts';
import { BERTH_INSTALL } from '../helpers/host-root.ts';
import type { BerthNode, Condition } from '../../src/controller/api.ts';
import { status as grpcStatus } from '@grpc/grpc-js';

type Obj = Record<string, unknown>;
interface Taint {
  key: string;
  effect: string;
  value?: string;
}
interface NodeObj {
  metadata: { name: string; labels?: Record<string, string> };
  spec?: { unschedulable?: boolean; taints?: Taint[] };
  status?: Obj;
}

const OTHER_TAINT: Taint = { key: 'dedicated', value: 'infra', effect: 'NoSchedule' };
const SWITCHING_TAINT = 'berth.io/switching';

// Records "argv" per call in $0's directory/calls, waits while a file "hold" is there, and exits
// with the number in exit-<verb> (default 0), saying what systemd-run --wait says of a failed unit.
const RECORDER = `dir=$(dirname "$0")
printf '%s\\n' "$*" >> "$dir/calls"
while [ -e "$dir/hold" ]; do sleep 0.05; done
verb=switch
for a in "$@"; do [ "$a" = revert ] && verb=revert; done
code=$(cat "$dir/exit-$verb" 2>/dev/null || echo 0)
[ "$code" = 0 ] || echo "Finished with result: exit-code; Main processes terminated with: code=exited/status=$code" >&2
exit "$code"
`;

// The host unit runs what follows `--` (install_command: this Node and bin/berth-install.js) with
// the fixture as host root, systemctl recorded in host-calls, and the test berthd's socket.
const INSTALLER_UNIT = (socket: string): string => `dir=$(dirname "$0")
printf '%s\\n' "$*" >> "$dir/calls"
while [ "$1" != "--" ]; do shift; done
shift
exec "$@" --host-root "$dir/host" --host-exec "$dir/host-exec.sh" --socket ${JSON.stringify(socket)} --health-timeout 20
`;
const GOLDEN = fileURLToPath(new URL('../golden/kubelet/kubeadm-flags/', import.meta.url));

interface SwitchNode {
  name: string;
  dir: string;
  daemon: TestDaemon;
  agent: RunningController;
}

describe('kubelet switch (node agent → berthd → host unit)', () => {
  let api: FakeApiServer;
  const nodes: SwitchNode[] = [];

  const node = (name: string): NodeObj => api.get<NodeObj>('nodes', name) as NodeObj;
  const label = (name: string): string | undefined => node(name).metadata.labels?.['berth.io/switch'];
  const taints = (name: string): Taint[] => node(name).spec?.taints ?? [];
  const condition = (name: string): Condition | undefined => api.get<BerthNode>('berthnodes', name)?.status?.conditions?.find((c) => c.type === 'KubeletSwitch');
  const calls = async (n: SwitchNode): Promise<string[]> => (await readFile(join(n.dir, 'calls'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
  const forbidden = () => api.refusals.filter((r) => r.code === 403);
  const explain = (n: SwitchNode) => (): string =>
    `node: ${JSON.stringify(api.get('nodes', n.name))}\nrefusals: ${JSON.stringify(api.refusals.slice(-5))}\n--- agent\n${n.agent.logs().split('\n').slice(-15).join('\n')}\n--- berthd\n${n.daemon.logs().split('\n').filter((l) => l.includes('kubelet')).slice(-5).join('\n')}`;

  /** As an admin would: merge labels and spec into the Node. */
  function edit(name: string, labels: Record<string, string>, spec: NodeObj['spec'] = {}): void {
    const n = node(name);
    api.apply({ ...n, metadata: { ...n.metadata, labels: { ...n.metadata.labels, ...labels } }, spec: { ...n.spec, ...spec } });
  }

  /** The kubelet came back: it reports the Node Ready now, on the given runtime. */
  function kubelet(name: string, runtime: string): void {
    api.setStatus('nodes', name, { nodeInfo: { containerRuntimeVersion: runtime }, conditions: [{ type: 'Ready', status: 'True', lastHeartbeatTime: new Date().toISOString() }] });
  }

  /** berthd's last host operation, once it is the wanted one and ended as wanted. */
  async function hostOp(n: SwitchNode, revert: boolean, state: string): Promise<void> {
    await waitFor(async () => {
      const s = await n.daemon.client.call<{ state: string; revert: boolean }>('node', 'SwitchStatus', {});
      return s.revert === revert && s.state === state;
    }, 15_000, `berthd reports the ${revert ? 'revert' : 'switch'} ${state}`, explain(n));
  }

  function pod(name: string, nodeName: string, meta: Obj = {}): Obj {
    return { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'team', ...meta }, spec: { nodeName }, status: { phase: 'Running' } };
  }

  async function startAgent(n: { name: string; daemon: TestDaemon }, switchTimeoutMs: number): Promise<RunningController> {
    return startController(api, api.nodeToken(n.name), ['--role', 'node-agent', '--node-name', n.name, '--socket', n.daemon.socket, '--switch-timeout-ms', String(switchTimeoutMs)], {
      timing: TEST_TIMING,
    });
  }

  /** `installer`: the host unit runs the real berth-install on a kubeadm fixture under dir/host. */
  async function addNode(name: string, opts: { cordoned: boolean; switchTimeoutMs?: number; installer?: boolean }): Promise<SwitchNode> {
    const dir = await mkdtemp(join(tmpdir(), 'berth-switch-'));
    const installCommand = opts.installer ? [process.execPath, BERTH_INSTALL] : ['berth-install'];
    const config = `[node]\nsystemd_run = ["/bin/sh", ${JSON.stringify(join(dir, 'recorder.sh'))}]\ninstall_command = ${JSON.stringify(installCommand)}\nswitch_timeout = 20\n`;
    const daemon = await startDaemon({ config });
    // Read when a unit starts: written once the daemon's socket is known.
    await writeFile(join(dir, 'recorder.sh'), opts.installer ? INSTALLER_UNIT(daemon.socket) : RECORDER);
    if (opts.installer) {
      await cp(join(GOLDEN, 'input'), join(dir, 'host'), { recursive: true });
      await writeFile(join(dir, 'host-exec.sh'), `#!/bin/sh\necho "$*" >> '${join(dir, 'host-calls')}'\n`, { mode: 0o755 });
    }
    api.apply({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name, labels: { 'kubernetes.io/hostname': name } },
      spec: { taints: [OTHER_TAINT], ...(opts.cordoned ? { unschedulable: true } : {}) },
      status: { nodeInfo: { containerRuntimeVersion: 'containerd://1.7.0' }, conditions: [{ type: 'Ready', status: 'True' }] },
    });
    const partial = { name, dir, daemon };
    const n: SwitchNode = { ...partial, agent: await startAgent(partial, opts.switchTimeoutMs ?? 20_000) };
    nodes.push(n);
    // The agent settled on the node before the test asks for anything.
    await waitFor(() => node(name).metadata.labels?.['berth.io/runtime'] === 'installed', 15_000, `${name} labelled installed`, explain(n));
    return n;
  }

  before(async () => {
    api = await FakeApiServer.start({ bookmarkMs: 500 });
  });

  afterEach(async () => {
    for (const n of nodes.splice(0)) {
      await n.agent.stop();
      await n.daemon.dispose();
      await rm(n.dir, { recursive: true, force: true });
      api.remove('nodes', n.name);
    }
    for (const p of api.list<{ metadata: { name: string } }>('pods')) api.remove('pods', p.metadata.name, 'team');
  });

  after(async () => {
    await api?.close();
  });

  test('refused unless cordoned; refused unless drained (DaemonSet, static and finished pods do not count)', async () => {
    const n = await addNode('sw-refuse', { cordoned: false });
    edit(n.name, { 'berth.io/switch': 'requested' });
    await waitFor(() => label(n.name) === 'refused', 15_000, 'refused (not cordoned)', explain(n));
    await waitFor(() => condition(n.name)?.reason === 'NotCordoned', 15_000, 'NotCordoned condition', explain(n));
    assert.match(condition(n.name)?.message ?? '', /kubectl cordon sw-refuse/);

    api.apply(pod('web', n.name));
    api.apply(pod('log-agent', n.name, { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'log', uid: 'u1' }] }));
    api.apply(pod('etcd', n.name, { annotations: { 'kubernetes.io/config.mirror': 'x' } }));
    api.apply({ ...pod('job-done', n.name), status: { phase: 'Succeeded' } });
    api.apply(pod('elsewhere', 'another-node'));
    edit(n.name, { 'berth.io/switch': 'requested' }, { unschedulable: true });
    await waitFor(() => label(n.name) === 'refused' && condition(n.name)?.reason === 'NotDrained', 15_000, 'refused (not drained)', explain(n));
    assert.match(condition(n.name)?.message ?? '', /1 pod\(s\) .*\(team\/web\); run kubectl drain sw-refuse/);
    assert.deepEqual(taints(n.name), [OTHER_TAINT], 'a refused switch does not taint');
    assert.deepEqual(await calls(n), [], 'the host was never asked');
    assert.deepEqual(forbidden(), []);
  });

  test('happy path: taint, switch on the host, survive an agent restart, done and untainted; then an admin revert', async () => {
    const n = await addNode('sw-happy', { cordoned: true });
    api.apply(pod('log-agent', n.name, { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'log', uid: 'u1' }] }));
    edit(n.name, { 'berth.io/switch': 'requested' });
    await waitFor(() => label(n.name) === 'switching', 15_000, 'switching', explain(n));
    assert.deepEqual(taints(n.name), [OTHER_TAINT, { key: SWITCHING_TAINT, effect: 'NoSchedule' }]);
    await waitFor(async () => (await calls(n)).length === 1, 15_000, 'the host unit started', explain(n));
    assert.deepEqual(await calls(n), ['--unit berth-switch --wait --collect -- berth-install switch --drained --apply --host-root /']);
    const st = await waitFor(async () => {
      const s = await n.daemon.client.call<{ state: string; revert: boolean }>('node', 'SwitchStatus', {});
      return s.state === 'SWITCH_STATE_SUCCEEDED' ? s : undefined;
    }, 15_000, 'berthd reports the switch succeeded');
    assert.equal(st.revert, false);

    // The switch removes the old runtime's pods, the agent's own among them: a new agent picks up.
    await n.agent.stop();
    n.agent = await startAgent(n, 20_000);
    kubelet(n.name, 'berth://0.1.0');
    await waitFor(() => label(n.name) === 'done', 15_000, 'done', explain(n));
    assert.deepEqual(taints(n.name), [OTHER_TAINT], 'only the switching taint is gone');
    await waitFor(() => condition(n.name)?.reason === 'Switched', 15_000, 'Switched condition', explain(n));
    assert.equal(condition(n.name)?.status, 'True');
    assert.equal((await calls(n)).length, 1, 'the restarted agent did not start a second switch');

    edit(n.name, { 'berth.io/switch': 'revert' });
    await waitFor(() => label(n.name) === 'reverting', 15_000, 'reverting', explain(n));
    await hostOp(n, true, 'SWITCH_STATE_SUCCEEDED');
    assert.deepEqual((await calls(n)).slice(1), ['--unit berth-revert --wait --collect -- berth-install revert --apply --host-root /']);
    // The unit's success alone is not the end: the kubelet must report the Node back on its old
    // runtime (it still says berth://), so the label stays until then.
    assert.equal(label(n.name), 'reverting');
    kubelet(n.name, 'containerd://1.7.0');
    await waitFor(() => label(n.name) === 'reverted', 15_000, 'reverted', explain(n));
    assert.deepEqual(taints(n.name), [OTHER_TAINT]);
    await waitFor(() => condition(n.name)?.reason === 'Reverted', 15_000, 'Reverted condition', explain(n));
    assert.match(condition(n.name)?.message ?? '', /back on its previous runtime \(containerd:\/\/1\.7\.0\) and Ready/);
    assert.deepEqual(forbidden(), []);
  });

  test('a failed host unit is reverted: failed, with the unit result in the condition; verified once the kubelet is back', async () => {
    const n = await addNode('sw-fail', { cordoned: true });
    await writeFile(join(n.dir, 'exit-switch'), '3');
    edit(n.name, { 'berth.io/switch': 'requested' });
    await waitFor(() => label(n.name) === 'failed', 15_000, 'failed', explain(n));
    await waitFor(async () => (await calls(n)).some((c) => c.includes('berth-install revert')), 15_000, 'revert asked', explain(n));
    const cond = await waitFor(() => (condition(n.name)?.reason === 'SwitchFailed' ? condition(n.name) : undefined), 15_000, 'SwitchFailed condition', explain(n));
    assert.match(cond.message, /status=3/);
    // Unknown: the kubelet has not reported since the revert began (its Ready is from before).
    assert.equal(cond.status, 'Unknown');
    assert.deepEqual(taints(n.name), [OTHER_TAINT]);
    // A new agent (the revert restarts the kubelet) keeps the reason in the BerthNode.
    await n.agent.stop();
    const writes = api.writeLog.filter((w) => w.resource === 'berthnodes/status' && w.name === n.name).length;
    n.agent = await startAgent(n, 20_000);
    await waitFor(() => api.writeLog.filter((w) => w.resource === 'berthnodes/status' && w.name === n.name).length > writes, 15_000, 'the new agent wrote status', explain(n));
    assert.deepEqual(condition(n.name), cond);
    // The restarted agent still follows the revert: the kubelet reports back on its old runtime.
    await hostOp(n, true, 'SWITCH_STATE_SUCCEEDED');
    kubelet(n.name, 'containerd://1.7.0');
    const back = await waitFor(() => (condition(n.name)?.status === 'False' ? condition(n.name) : undefined), 15_000, 'revert verified', explain(n));
    assert.equal(back.reason, 'SwitchFailed');
    assert.match(back.message, /status=3.*; reverted: the kubelet is back on its previous runtime \(containerd:\/\/1\.7\.0\) and Ready/s);
    assert.equal(label(n.name), 'failed');
    assert.deepEqual(forbidden(), []);
  });

  test('a kubelet that does not come back on berth in time is reverted: failed', async () => {
    const n = await addNode('sw-timeout', { cordoned: true, switchTimeoutMs: 1500 });
    edit(n.name, { 'berth.io/switch': 'requested' });
    await waitFor(() => label(n.name) === 'switching', 15_000, 'switching', explain(n));
    // The kubelet restarts but stays on its old runtime.
    await waitFor(() => label(n.name) === 'failed', 15_000, 'failed after the timeout', explain(n));
    assert.deepEqual((await calls(n)).map((c) => c.split(' -- ')[1]), ['berth-install switch --drained --apply --host-root /', 'berth-install revert --apply --host-root /']);
    // Nor does it report after the revert: RevertFailed, keeping why the switch failed.
    const cond = await waitFor(() => (condition(n.name)?.reason === 'RevertFailed' ? condition(n.name) : undefined), 15_000, 'RevertFailed', explain(n));
    assert.match(cond.message, /not Ready with a berth:\/\/ runtime within 2 s.*the revert did not bring the node back: .*no Node status from the kubelet since then/s);
    assert.equal(label(n.name), 'failed');
    assert.deepEqual(forbidden(), []);
  });

  test('a revert after which the kubelet still reports berth:// (never restarted) ends RevertFailed', async () => {
    const n = await addNode('sw-stuck', { cordoned: false, switchTimeoutMs: 1500 });
    // The unit waits until the kubelet has reported, so its report counts as after the revert began.
    await writeFile(join(n.dir, 'hold'), '');
    edit(n.name, { 'berth.io/switch': 'revert' });
    await hostOp(n, true, 'SWITCH_STATE_RUNNING');
    kubelet(n.name, 'berth://0.1.0');
    await rm(join(n.dir, 'hold'));
    await waitFor(() => label(n.name) === 'failed', 15_000, 'failed', explain(n));
    // The label goes first; the BerthNode's status follows in the same pass.
    await waitFor(() => condition(n.name)?.reason === 'RevertFailed', 15_000, 'RevertFailed', explain(n));
    assert.match(condition(n.name)?.message ?? '', /the Node is Ready but still on berth:\/\/0\.1\.0: the kubelet was not restarted onto its previous runtime/);
    assert.deepEqual(taints(n.name), [OTHER_TAINT]);
    assert.deepEqual(forbidden(), []);
  });

  /** Every fixture file on the node is byte for byte its golden copy under `tree`. */
  async function assertHostFiles(n: SwitchNode, tree: 'input' | 'expected'): Promise<void> {
    for (const e of await readdir(join(GOLDEN, 'input'), { withFileTypes: true, recursive: true })) {
      if (!e.isFile()) continue;
      const f = relative(join(GOLDEN, 'input'), join(e.parentPath, e.name));
      assert.ok((await readFile(join(n.dir, 'host', f))).equals(await readFile(join(GOLDEN, tree, f))), `/${f} is not byte for byte ${tree}/`);
    }
  }
  const hostCalls = async (n: SwitchNode): Promise<string[]> => (await readFile(join(n.dir, 'host-calls'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
  const KUBELET_RESTART = ['systemctl stop kubelet.service', 'systemctl start kubelet.service'];

  test('real berth-install: the kubelet comes back on neither berth nor its old runtime → files restored byte for byte, RevertFailed', async () => {
    const n = await addNode('sw-inst-gone', { cordoned: true, switchTimeoutMs: 1500, installer: true });
    edit(n.name, { 'berth.io/switch': 'requested' });
    await hostOp(n, false, 'SWITCH_STATE_SUCCEEDED');
    await assertHostFiles(n, 'expected');
    await waitFor(() => condition(n.name)?.reason === 'RevertFailed', 20_000, 'RevertFailed', explain(n));
    assert.equal(label(n.name), 'failed');
    await assertHostFiles(n, 'input');
    assert.deepEqual(await hostCalls(n), [...KUBELET_RESTART, ...KUBELET_RESTART], 'the switch and the revert each restarted the kubelet');
    assert.match(condition(n.name)?.message ?? '', /the kubelet's files were restored, but 2 s later the kubelet has not reported the Node Ready/);
    assert.deepEqual(forbidden(), []);
  });

  test('real berth-install: a switch that fails on the host is reverted; verified when the kubelet reports Ready on its old runtime', async () => {
    const n = await addNode('sw-inst-back', { cordoned: true, installer: true });
    // Something that is no CRI server where the old runtime's socket should be: removing its pods fails.
    await mkdir(join(n.dir, 'host/var/run/containerd'), { recursive: true });
    await writeFile(join(n.dir, 'host/var/run/containerd/containerd.sock'), 'not a socket');
    edit(n.name, { 'berth.io/switch': 'requested' });
    await waitFor(() => label(n.name) === 'failed', 20_000, 'failed', explain(n));
    await hostOp(n, true, 'SWITCH_STATE_SUCCEEDED');
    await assertHostFiles(n, 'input');
    await waitFor(() => condition(n.name)?.reason === 'SwitchFailed', 15_000, 'SwitchFailed', explain(n));
    assert.equal(condition(n.name)?.status, 'Unknown', 'not verified before the kubelet reports');
    assert.match(condition(n.name)?.message ?? '', /removing the old runtime's pods/);
    kubelet(n.name, 'containerd://1.7.0');
    await waitFor(() => condition(n.name)?.status === 'False', 15_000, 'revert verified', explain(n));
    assert.equal(condition(n.name)?.reason, 'SwitchFailed');
    assert.match(condition(n.name)?.message ?? '', /reverted: the kubelet is back on its previous runtime/);
    assert.deepEqual(forbidden(), []);
  });

  test('real berth-install: an admin revert whose backup is damaged fails on the host: failed, RevertFailed', async () => {
    const n = await addNode('sw-inst-damaged', { cordoned: true, installer: true });
    edit(n.name, { 'berth.io/switch': 'requested' });
    await hostOp(n, false, 'SWITCH_STATE_SUCCEEDED');
    kubelet(n.name, 'berth://0.1.0');
    await waitFor(() => label(n.name) === 'done', 15_000, 'done', explain(n));
    const backup = join(n.dir, 'host/var/lib/berth/installer/kubelet-backup');
    for (const f of await readdir(backup)) if (f.endsWith('.orig')) await writeFile(join(backup, f), 'damaged\n');
    edit(n.name, { 'berth.io/switch': 'revert' });
    await waitFor(() => label(n.name) === 'failed', 20_000, 'failed', explain(n));
    await waitFor(() => condition(n.name)?.reason === 'RevertFailed', 15_000, 'RevertFailed', explain(n));
    assert.match(condition(n.name)?.message ?? '', /revert failed: restoring the kubelet's backup failed: .*restore the files under \/var\/lib\/berth\/installer\/kubelet-backup by hand/s);
    assert.deepEqual(taints(n.name), [OTHER_TAINT]);
    await assertHostFiles(n, 'expected');
    assert.deepEqual(forbidden(), []);
  });

  test('berthd: bad requests get clear errors; one operation at a time; the same one asked again is not started twice', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-switch-'));
    await writeFile(join(dir, 'recorder.sh'), RECORDER);
    await writeFile(join(dir, 'hold'), '');
    const daemon = await startDaemon({ config: `[node]\nsystemd_run = ["/bin/sh", ${JSON.stringify(join(dir, 'recorder.sh'))}]\ninstall_command = ["berth-install"]\n` });
    try {
      // crictl info (verbose Status) shows what a switch would run on the host.
      const verbose = await daemon.client.call<{ info: Record<string, string> }>('runtime', 'Status', { verbose: true });
      const shown = JSON.parse(verbose.info.config ?? '{}') as { node?: unknown };
      assert.deepEqual(shown.node, { systemdRun: ['/bin/sh', join(dir, 'recorder.sh')], installCommand: ['berth-install'], switchTimeoutSeconds: 600 });
      const call = (req: object) => daemon.client.call<{ state: string; revert: boolean; message: string }>('node', 'SwitchKubelet', req);
      assert.equal((await daemon.client.call<{ state: string }>('node', 'SwitchStatus', {})).state, 'SWITCH_STATE_IDLE');
      await assert.rejects(call({}), (e: { code: number; details: string }) => e.code === grpcStatus.FAILED_PRECONDITION && /cordon and drain the node first/.test(e.details));
      await assert.rejects(call({ drained: true, revert: true }), (e: { code: number }) => e.code === grpcStatus.INVALID_ARGUMENT);
      assert.equal((await call({ drained: true })).state, 'SWITCH_STATE_RUNNING');
      assert.equal((await call({ drained: true })).state, 'SWITCH_STATE_RUNNING');
      await assert.rejects(call({ revert: true }), (e: { code: number; details: string }) => e.code === grpcStatus.FAILED_PRECONDITION && /a kubelet switch is running/.test(e.details));
      await rm(join(dir, 'hold'));
      await waitFor(async () => (await daemon.client.call<{ state: string }>('node', 'SwitchStatus', {})).state === 'SWITCH_STATE_SUCCEEDED', 15_000, 'switch succeeded');
      assert.equal((await readFile(join(dir, 'calls'), 'utf8')).trim().split('\n').length, 1, 'started once');
    } finally {
      await rm(join(dir, 'hold'), { force: true });
      await daemon.dispose();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
