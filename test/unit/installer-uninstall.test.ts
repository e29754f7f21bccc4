// berth-install uninstall: explicit only; reverts a switched kubelet, removes berthd's unit and
// /opt/berth, keeps /var/lib/berth and /etc/berth.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDaemon, type TestDaemon } from '../helpers/daemon.ts';
import { fakeHost, type FakeHost } from '../helpers/host-root.ts';
import { BERTH_VERSION } from '../../src/version.ts';

const INPUT = fileURLToPath(new URL('../golden/kubelet/kubeadm-flags/input/', import.meta.url));
let daemon: TestDaemon;
let h: FakeHost;
before(async () => {
  daemon = await startDaemon();
  h = await fakeHost();
});
after(async () => {
  await h.dispose();
  await daemon.dispose();
});

test('uninstall reverts the kubelet, removes berthd and /opt/berth, and keeps /var/lib/berth', async () => {
  await cp(INPUT, h.root, { recursive: true });
  const common = ['--socket', daemon.socket, '--version', BERTH_VERSION, '--health-timeout', '20'];
  assert.equal((await h.run(['install', '--source', h.source, ...common])).code, 0);
  assert.equal((await h.run(['switch', '--apply', '--drained', ...common])).code, 0);
  await mkdir(join(h.root, 'var/lib/berth/metadata'), { recursive: true });
  await writeFile(join(h.root, 'var/lib/berth/metadata/canary'), 'images stay');
  const before = (await h.calls()).length;

  // From a pod on a switched node, the host finishes the job in a transient unit.
  assert.equal((await h.run(['uninstall'])).code, 0);
  assert.match((await h.calls())[before] ?? '', /^systemd-run --unit berth-uninstall .* uninstall --apply --host-root \/$/);

  const r = await h.run(['uninstall', '--apply']);
  assert.equal(r.code, 0, r.stderr);
  for (const f of ['var/lib/kubelet/kubeadm-flags.env', 'var/lib/kubelet/config.yaml']) {
    assert.ok((await readFile(join(h.root, f))).equals(await readFile(join(INPUT, f))), `${f} restored`);
  }
  await assert.rejects(stat(join(h.root, 'opt/berth')), { code: 'ENOENT' });
  await assert.rejects(stat(join(h.root, 'etc/systemd/system/berthd.service')), { code: 'ENOENT' });
  assert.equal(await readFile(join(h.root, 'var/lib/berth/metadata/canary'), 'utf8'), 'images stay');
  await stat(join(h.root, 'etc/berth/config.toml'));
  assert.deepEqual((await h.calls()).slice(before + 1), [
    'systemctl stop kubelet.service',
    'systemctl start kubelet.service',
    'systemctl disable --now berthd.service',
    'systemctl daemon-reload',
  ]);
  // Run again: nothing left, still fine.
  assert.equal((await h.run(['uninstall', '--apply'])).code, 0);
});
