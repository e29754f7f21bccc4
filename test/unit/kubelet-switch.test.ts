// switch-kubelet per kubelet layout (golden files in test/golden/kubelet/<layout>/): the edit
// changes only the endpoint lines, a rerun changes nothing and keeps the first backup, and
// --revert restores every file byte for byte. Runs the real command with a recording systemctl.
import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONTROLLER } from '../helpers/controller.ts';

const GOLDEN = fileURLToPath(new URL('../golden/kubelet/', import.meta.url));
let base: string;
let host: string;
let log: string;

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'berth-kubelet-'));
  host = join(base, 'host');
  log = join(base, 'systemctl.log');
  // A recorder: appends its arguments, exits 0.
  await writeFile(join(base, 'systemctl'), `#!/bin/sh\necho "$*" >> ${log}\n`, { mode: 0o755 });
});
afterEach(async () => rm(base, { recursive: true, force: true }));

async function files(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out.set(relative(dir, join(e.parentPath, e.name)), await readFile(join(e.parentPath, e.name), 'utf8'));
  }
  return out;
}

const run = (...extra: string[]) => spawnSync(process.execPath, [CONTROLLER, 'switch-kubelet', '--host-root', host, '--systemctl', join(base, 'systemctl'), ...extra], { encoding: 'utf8', timeout: 30_000 });

for (const [layout, unit] of [['kubeadm', 'kubelet'], ['config-only', 'kubelet'], ['k3s', 'k3s']] as const) {
  test(`${layout}: switch matches the golden files, reruns converge, revert restores byte for byte`, async () => {
    await cp(join(GOLDEN, layout, 'before'), host, { recursive: true });
    const before = await files(host);
    const first = run();
    assert.equal(first.status, 0, first.stderr);
    const after = await files(join(GOLDEN, layout, 'after'));
    const now = await files(host);
    for (const [path, text] of after) assert.equal(now.get(path), text, path);
    for (const [path, text] of before) assert.equal(now.get(`${path}.berth-backup`), text, `${path} backed up`);
    const again = run();
    assert.equal(again.status, 0, again.stderr);
    assert.deepEqual(await files(host), now, 'a rerun changes nothing, backups included');
    const revert = run('--revert');
    assert.equal(revert.status, 0, revert.stderr);
    assert.deepEqual(await files(host), before);
    assert.deepEqual((await readFile(log, 'utf8')).trim().split('\n'), [`restart ${unit}`, `restart ${unit}`, `restart ${unit}`]);
  });
}

test('a node with no kubelet configuration, or one it cannot parse, is refused and left untouched', async () => {
  const none = run();
  assert.equal(none.status, 1);
  assert.match(none.stderr, /no kubelet configuration found under/);
  await cp(join(GOLDEN, 'kubeadm', 'before'), host, { recursive: true });
  await writeFile(join(host, 'var/lib/kubelet/kubeadm-flags.env'), 'SOMETHING_ELSE=1\n');
  const before = await files(host);
  const bad = run();
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /kubeadm-flags.env has no KUBELET_KUBEADM_ARGS/);
  assert.deepEqual(await files(host), before, 'no file edited, no backup written');
});
