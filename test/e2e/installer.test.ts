// The DaemonSet's installer (berth-controller install/uninstall) under --host-root, with a
// recording systemctl that runs the real berthd the written unit names: a fresh install matches
// the golden files, reruns converge (also after a kill at any systemctl step), upgrades go side by
// side, a version whose berthd never answers is rolled back, uninstall keeps the images.
import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONTROLLER } from '../helpers/controller.ts';
import { CriClient } from '../../src/client/cri-client.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const FAKE_SYSTEMCTL = fileURLToPath(new URL('../helpers/fake-systemctl.ts', import.meta.url));
const GOLDEN = fileURLToPath(new URL('../golden/install/', import.meta.url));

interface Run {
  code: number | null;
  stderr: string;
}

describe('installer', () => {
  let base: string;
  let host: string;
  let log: string;
  const sources = new Map<string, string>();

  /** A berth tree as the image carries it: bin/node and app/ (here: links to this Node and repo). */
  async function source(version: string, broken = false): Promise<string> {
    const dir = join(base, `src-${version}`);
    await mkdir(join(dir, 'bin'), { recursive: true });
    await symlink(process.execPath, join(dir, 'bin/node'));
    const empty = join(base, 'empty-app');
    await mkdir(empty, { recursive: true });
    await symlink(broken ? empty : REPO, join(dir, 'app'));
    sources.set(version, dir);
    return dir;
  }

  function run(command: 'install' | 'uninstall', version: string, env: Record<string, string> = {}, waitSeconds = 20): Promise<Run> {
    const args = [CONTROLLER, command, '--host-root', host, '--version', version, '--systemctl', `${process.execPath} ${FAKE_SYSTEMCTL} ${host} ${log}`, '--wait-seconds', String(waitSeconds)];
    if (command === 'install') args.push('--source', sources.get(version) as string);
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stderr })));
  }

  const calls = async (): Promise<string[]> => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean);
  const berthdPid = async (): Promise<string> => readFile(join(host, 'run/fake-systemd-berthd.pid'), 'utf8').catch(() => '');
  async function serving(): Promise<boolean> {
    const client = new CriClient(join(host, 'run/berth/berth.sock'));
    try {
      await client.call('runtime', 'Version', {}, { timeoutMs: 3000 });
      return true;
    } catch {
      return false;
    } finally {
      client.close();
    }
  }

  /** The files the installer owns, as `path type [target]` lines (state dirs left out). */
  async function tree(): Promise<string[]> {
    const out: string[] = [];
    for (const top of ['opt', 'etc']) {
      if (!existsSync(join(host, top))) continue;
      for (const e of await readdir(join(host, top), { recursive: true, withFileTypes: true })) {
        const path = join(e.parentPath, e.name);
        const rel = relative(host, path);
        if (/^opt\/berth\/[^/]+\/app\//.test(rel)) continue; // the linked repo
        const st = await lstat(path);
        out.push(st.isSymbolicLink() ? `${rel} -> ${(await readlink(path)).replace(base, '$BASE').replace(process.execPath, '$NODE').replace(REPO.replace(/\/$/, ''), '$REPO')}` : `${rel}${st.isDirectory() ? '/' : ''}`);
      }
    }
    return out.sort();
  }

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'berth-install-'));
    host = join(base, 'host');
    log = join(base, 'systemctl.log');
    await mkdir(host);
    sources.clear();
  });
  afterEach(async () => {
    const pid = Number(await berthdPid());
    if (pid) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // already gone
      }
      for (let i = 0; i < 200 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 25));
    }
    await rm(base, { recursive: true, force: true });
  });

  test('a fresh install matches the golden files and starts berthd; a rerun changes nothing', async () => {
    await source('1.0.0');
    const first = await run('install', '1.0.0');
    assert.equal(first.code, 0, first.stderr);
    assert.equal(await readFile(join(host, 'etc/systemd/system/berthd.service'), 'utf8'), await readFile(join(GOLDEN, 'berthd.service'), 'utf8'));
    assert.equal(await readFile(join(host, 'etc/berth/config.toml'), 'utf8'), await readFile(join(GOLDEN, 'config.toml'), 'utf8'));
    assert.deepEqual(await tree(), (await readFile(join(GOLDEN, 'tree.txt'), 'utf8')).trim().split('\n'));
    assert.deepEqual(await calls(), ['daemon-reload', 'enable berthd.service', 'restart berthd.service']);
    assert.ok(await serving());
    const pid = await berthdPid();
    const again = await run('install', '1.0.0');
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual((await calls()).slice(3), ['enable berthd.service', 'start berthd.service'], 'a rerun neither reloads nor restarts');
    assert.equal(await berthdPid(), pid);
    assert.deepEqual(await tree(), (await readFile(join(GOLDEN, 'tree.txt'), 'utf8')).trim().split('\n'));
  });

  test("an admin's config.toml is never overwritten", async () => {
    await source('1.0.0');
    await mkdir(join(host, 'etc/berth'), { recursive: true });
    await writeFile(join(host, 'etc/berth/config.toml'), 'log_level = "debug"\n');
    assert.equal((await run('install', '1.0.0')).code, 0);
    assert.equal(await readFile(join(host, 'etc/berth/config.toml'), 'utf8'), 'log_level = "debug"\n');
  });

  for (const step of ['daemon-reload', 'enable', 'restart']) {
    test(`killed at systemctl ${step}, the next run converges`, async () => {
      await source('1.0.0');
      const killed = await run('install', '1.0.0', { FAKE_SYSTEMCTL_KILL_INSTALLER_ON: step });
      assert.notEqual(killed.code, 0);
      const rerun = await run('install', '1.0.0');
      assert.equal(rerun.code, 0, rerun.stderr);
      assert.deepEqual(await tree(), (await readFile(join(GOLDEN, 'tree.txt'), 'utf8')).trim().split('\n'));
      assert.ok(await serving());
    });
  }

  test('an upgrade installs side by side; a version whose berthd does not answer is rolled back', async () => {
    await source('1.0.0');
    await source('2.0.0');
    await source('3.0.0', true);
    assert.equal((await run('install', '1.0.0')).code, 0);
    const up = await run('install', '2.0.0');
    assert.equal(up.code, 0, up.stderr);
    assert.equal(await readlink(join(host, 'opt/berth/current')), '2.0.0');
    assert.ok(existsSync(join(host, 'opt/berth/1.0.0/.complete')) && existsSync(join(host, 'opt/berth/2.0.0/.complete')));
    assert.equal((await calls()).at(-1), 'restart berthd.service');
    assert.ok(await serving());
    const bad = await run('install', '3.0.0', {}, 4);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /berthd 3\.0\.0 did not answer CRI Status within 4 s .*switched back to 2\.0\.0: 2\.0\.0 serves again/);
    assert.equal(await readlink(join(host, 'opt/berth/current')), '2.0.0');
    assert.ok(await serving(), 'the previous version serves again');
  });

  test('uninstall stops berthd and removes its unit and files, keeping images and config', async () => {
    await source('1.0.0');
    assert.equal((await run('install', '1.0.0')).code, 0);
    const out = await run('uninstall', '1.0.0');
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual((await calls()).slice(-2), ['disable --now berthd.service', 'daemon-reload']);
    assert.ok(!existsSync(join(host, 'etc/systemd/system/berthd.service')));
    assert.ok(!existsSync(join(host, 'opt/berth')));
    assert.ok(existsSync(join(host, 'var/lib/berth')) && existsSync(join(host, 'etc/berth/config.toml')));
    assert.equal(await serving(), false);
  });
});
