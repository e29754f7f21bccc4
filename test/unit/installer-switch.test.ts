// berth-install switch/revert against golden files per kubelet layout (kubeadm flags env,
// KubeletConfiguration YAML, systemd drop-in) under a temp host root, with the host's systemctl
// recorded and a real berthd as the runtime that must answer first.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDaemon, type TestDaemon } from '../helpers/daemon.ts';
import { fakeHost, type FakeHost } from '../helpers/host-root.ts';
import { SWITCH_STEPS } from '../../src/installer/kubelet-switch.ts';
import { BERTH_VERSION } from '../../src/version.ts';

const GOLDEN = fileURLToPath(new URL('../golden/kubelet/', import.meta.url));
const UPDATE = process.env.BERTH_UPDATE_GOLDEN === '1';

let daemon: TestDaemon;
const hosts: FakeHost[] = [];
before(async () => {
  daemon = await startDaemon();
});
after(async () => {
  await Promise.all(hosts.map((h) => h.dispose()));
  await daemon.dispose();
});

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(relative(dir, join(e.parentPath, e.name)));
  return out.sort();
}

/** A node whose kubelet files are the layout's input. */
async function nodeWith(layout: string): Promise<FakeHost> {
  const h = await fakeHost();
  hosts.push(h);
  await cp(join(GOLDEN, layout, 'input'), h.root, { recursive: true });
  return h;
}

/** Every input file on the node equals its golden counterpart under `tree` (input or expected). */
async function assertTree(h: FakeHost, layout: string, tree: 'input' | 'expected'): Promise<void> {
  for (const f of await files(join(GOLDEN, layout, 'input'))) {
    const have = await readFile(join(h.root, f));
    const goldenPath = join(GOLDEN, layout, tree, f);
    if (UPDATE && tree === 'expected') {
      await mkdir(dirname(goldenPath), { recursive: true });
      await writeFile(goldenPath, have);
    }
    assert.deepEqual(have.toString(), (await readFile(goldenPath)).toString(), `${layout}: /${f} differs from ${tree}/`);
    assert.ok(have.equals(await readFile(goldenPath)), `${layout}: /${f} is not byte for byte ${tree}/`);
  }
}

const apply = (verb: 'switch' | 'revert'): string[] => [verb, '--apply', '--drained', '--socket', daemon.socket, '--version', BERTH_VERSION, '--health-timeout', '20'];

const LAYOUTS: Record<string, string[]> = {
  'kubeadm-flags': ['systemctl stop kubelet.service', 'systemctl start kubelet.service'],
  'config-yaml': ['systemctl stop kubelet.service', 'systemctl start kubelet.service'],
  'drop-in': ['systemctl daemon-reload', 'systemctl stop kubelet.service', 'systemctl start kubelet.service'],
  // k3s keeps the kubelet's flags in its own config and runs the kubelet in its agent unit.
  'k3s-agent': ['systemctl stop k3s-agent.service', 'systemctl start k3s-agent.service'],
};

describe('berth-install switch and revert', () => {
  for (const [layout, calls] of Object.entries(LAYOUTS)) {
    test(`${layout}: switch edits the endpoints as the golden files say, revert restores them byte for byte`, async () => {
      const h = await nodeWith(layout);
      const r = await h.run(apply('switch'));
      assert.equal(r.code, 0, r.stderr);
      await assertTree(h, layout, 'expected');
      assert.deepEqual(await h.calls(), calls);
      const mode = (await stat(join(h.root, (await files(join(GOLDEN, layout, 'input')))[0] ?? ''))).mode;

      const back = await h.run(['revert', '--apply']);
      assert.equal(back.code, 0, back.stderr);
      await assertTree(h, layout, 'input');
      assert.equal((await stat(join(h.root, (await files(join(GOLDEN, layout, 'input')))[0] ?? ''))).mode, mode);
      assert.deepEqual((await h.calls()).slice(calls.length), calls);
      await assert.rejects(stat(join(h.root, 'var/lib/berth/installer/kubelet-backup')), { code: 'ENOENT' });

      // A second revert has nothing left to do and touches nothing.
      assert.equal((await h.run(['revert', '--apply'])).code, 0);
      assert.equal((await h.calls()).length, calls.length * 2);
    });
  }

  for (const step of SWITCH_STEPS) {
    test(`killed after "${step}", a rerun converges and revert still gives back the originals`, async () => {
      const h = await nodeWith('kubeadm-flags');
      const killed = await h.run(apply('switch'), { BERTH_INSTALL_CRASH_AFTER: step });
      assert.equal(killed.signal, 'SIGKILL', killed.stderr);
      const r = await h.run(apply('switch'));
      assert.equal(r.code, 0, r.stderr);
      await assertTree(h, 'kubeadm-flags', 'expected');
      assert.equal((await h.calls()).at(-1), 'systemctl start kubelet.service');
      assert.equal((await h.run(['revert', '--apply'])).code, 0);
      await assertTree(h, 'kubeadm-flags', 'input');
    });
  }

  test('switch refuses an undrained node, and a node whose berthd does not answer', async () => {
    const h = await nodeWith('config-yaml');
    const undrained = await h.run(['switch']);
    assert.equal(undrained.code, 2);
    assert.match(undrained.stderr, /cordoned and drained/);
    const dead = await h.run(['switch', '--apply', '--drained', '--socket', join(h.dir, 'nothing.sock'), '--health-timeout', '1']);
    assert.equal(dead.code, 1);
    assert.match(dead.stderr, /berthd is not healthy/);
    await assertTree(h, 'config-yaml', 'input');
    assert.deepEqual(await h.calls(), []);
  });

  test('a switch that fails after the kubelet stopped puts the kubelet back as it was', async () => {
    const h = await nodeWith('config-yaml');
    // Something that is no CRI server where the old runtime's socket should be.
    await mkdir(join(h.root, 'run/containerd'), { recursive: true });
    await writeFile(join(h.root, 'run/containerd/containerd.sock'), 'not a socket');
    const r = await h.run(apply('switch'));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /switching the kubelet to berth failed and was reverted: removing the old runtime's pods through/);
    await assertTree(h, 'config-yaml', 'input');
    assert.deepEqual(await h.calls(), ['systemctl stop kubelet.service', 'systemctl stop kubelet.service', 'systemctl start kubelet.service']);
    await assert.rejects(stat(join(h.root, 'var/lib/berth/installer/kubelet-backup')), { code: 'ENOENT' });
  });

  test('a node with no kubelet configuration is refused with what was searched', async () => {
    const h = await fakeHost();
    hosts.push(h);
    const r = await h.run(apply('switch'));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /found no kubelet configuration to edit.*kubeadm-flags\.env/);
  });

  test('switch and uninstall from a pod hand the work to a transient host unit', async () => {
    const h = await nodeWith('drop-in');
    assert.equal((await h.run(['switch', '--drained'])).code, 0);
    assert.deepEqual(await h.calls(), [
      'systemd-run --unit berth-switch --collect --quiet -- /opt/berth/current/bin/node /opt/berth/current/lib/berth-install.js switch --apply --host-root / --drained',
    ]);
  });
});
