// berth-install install/upgrade under a temp host root against a real berthd for the health
// check: files, the symlink flip, systemctl calls, rollback, pruning, and reruns after a kill at
// every step.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, readlink, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startDaemon, type TestDaemon } from '../helpers/daemon.ts';
import { fakeHost, type FakeHost } from '../helpers/host-root.ts';
import { INSTALL_STEPS } from '../../src/installer/install.ts';
import { unitText } from '../../src/installer/unit.ts';
import { BERTH_VERSION } from '../../src/version.ts';

let daemon: TestDaemon;
const hosts: FakeHost[] = [];

before(async () => {
  daemon = await startDaemon();
});
after(async () => {
  await Promise.all(hosts.map((h) => h.dispose()));
  await daemon.dispose();
});

async function host(): Promise<FakeHost> {
  const h = await fakeHost();
  hosts.push(h);
  return h;
}

/** An older version already installed and current, as an upgrade finds it. */
async function preinstall(h: FakeHost, version: string, mtime = new Date()): Promise<void> {
  const dir = join(h.root, 'opt/berth', version);
  await mkdir(join(dir, 'bin'), { recursive: true });
  await mkdir(join(dir, 'lib'), { recursive: true });
  await writeFile(join(dir, 'bin/node'), 'old node');
  await utimes(dir, mtime, mtime);
}

const installArgs = (h: FakeHost, extra: string[] = []): string[] => ['install', '--version', BERTH_VERSION, '--source', h.source, '--socket', daemon.socket, '--health-timeout', '20', ...extra];

async function optEntries(h: FakeHost): Promise<string[]> {
  return (await readdir(join(h.root, 'opt/berth'))).sort();
}

describe('berth-install install', () => {
  test('a fresh node gets the release, the current link, the unit and a first config, and berthd restarted', async () => {
    const h = await host();
    const template = join(h.dir, 'config.toml');
    await writeFile(template, 'log_level = "debug"\n');
    const r = await h.run(installArgs(h, ['--config-template', template]));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await readlink(join(h.root, 'opt/berth/current')), BERTH_VERSION);
    assert.equal(await readFile(join(h.root, 'opt/berth', BERTH_VERSION, 'bin/node'), 'utf8'), await readFile(join(h.source, 'bin/node'), 'utf8'));
    assert.ok((await readFile(join(h.root, 'opt/berth', BERTH_VERSION, 'lib/proto/api.proto'), 'utf8')).includes('proto3'));
    assert.equal(await readFile(join(h.root, 'etc/systemd/system/berthd.service'), 'utf8'), unitText());
    assert.equal(await readFile(join(h.root, 'etc/berth/config.toml'), 'utf8'), 'log_level = "debug"\n');
    assert.deepEqual(await h.calls(), ['systemctl daemon-reload', 'systemctl enable berthd.service', 'systemctl restart berthd.service']);

    // An operator's config survives a reinstall, and a node already on this version is not
    // restarted (the init container runs again after every reboot).
    await writeFile(join(h.root, 'etc/berth/config.toml'), '# mine\n');
    assert.equal((await h.run(installArgs(h, ['--config-template', template]))).code, 0);
    assert.equal(await readFile(join(h.root, 'etc/berth/config.toml'), 'utf8'), '# mine\n');
    assert.deepEqual((await h.calls()).slice(3), ['systemctl daemon-reload', 'systemctl enable berthd.service', 'systemctl start berthd.service']);
  });

  test('an upgrade whose berthd never answers flips back, restarts the old one and exits non-zero', async () => {
    const h = await host();
    // The daemon answering is the version already installed, not the one being installed.
    await preinstall(h, BERTH_VERSION);
    await symlink(BERTH_VERSION, join(h.root, 'opt/berth/current'));
    const r = await h.run(['install', '--version', '9.9.9', '--source', h.source, '--socket', daemon.socket, '--health-timeout', '1']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`did not become healthy.*answers, not 9\\.9\\.9.*rolled back: ${BERTH_VERSION.replaceAll('.', '\\.')} serves again`));
    assert.equal(await readlink(join(h.root, 'opt/berth/current')), BERTH_VERSION);
    assert.deepEqual(await optEntries(h), ['9.9.9', BERTH_VERSION, 'current'].sort());
    assert.deepEqual((await h.calls()).filter((c) => c.includes('restart')), ['systemctl restart berthd.service', 'systemctl restart berthd.service']);
  });

  test('a failed first install has nothing to roll back to and says so', async () => {
    const h = await host();
    const r = await h.run(['install', '--version', BERTH_VERSION, '--source', h.source, '--socket', join(h.dir, 'none.sock'), '--health-timeout', '1']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /did not become healthy.*nothing to roll back to/);
    assert.equal(await readlink(join(h.root, 'opt/berth/current')), BERTH_VERSION);
  });

  test('a healthy upgrade keeps at most --keep versions, never the running one', async () => {
    const h = await host();
    const day = 86_400_000;
    for (const [i, v] of ['0.0.1', '0.0.2', '0.0.3', '0.0.4'].entries()) await preinstall(h, v, new Date(Date.now() - (10 - i) * day));
    const r = await h.run(installArgs(h, ['--keep', '2']));
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await optEntries(h), ['0.0.4', BERTH_VERSION, 'current'].sort());
  });

  for (const step of INSTALL_STEPS) {
    test(`killed after "${step}", a rerun converges`, async () => {
      const h = await host();
      await preinstall(h, '0.0.1');
        await symlink('0.0.1', join(h.root, 'opt/berth/current'));
      const killed = await h.run(installArgs(h), { BERTH_INSTALL_CRASH_AFTER: step });
      assert.equal(killed.signal, 'SIGKILL', killed.stderr);
      const r = await h.run(installArgs(h));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await readlink(join(h.root, 'opt/berth/current')), BERTH_VERSION);
      assert.deepEqual(await optEntries(h), ['0.0.1', BERTH_VERSION, 'current'].sort(), 'no temp dirs, no .previous left');
      assert.equal(await readFile(join(h.root, 'etc/systemd/system/berthd.service'), 'utf8'), unitText());
      // Until the upgrade is proven (the prune step ends it), a rerun restarts berthd again.
      assert.equal((await h.calls()).at(-1), `systemctl ${step === 'prune' ? 'start' : 'restart'} berthd.service`);
    });
  }

  test('bad input is refused with a message', async () => {
    const h = await host();
    const r = await h.run(['install', '--version', '../etc', '--source', h.source]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not a version name/);
    const s = await h.run(['install', '--keep', '0']);
    assert.equal(s.code, 2);
    assert.match(s.stderr, /--keep/);
  });
});
