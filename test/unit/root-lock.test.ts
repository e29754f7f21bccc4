// The root lock: exactly one holder per root directory, however the directory is named and however
// many daemons start at once; freed by the kernel when the holder dies.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lockRoot, RootLockedError, type RootLock } from '../../src/daemon/root-lock.ts';

async function tempRoot(t: TestContext): Promise<string> {
  const base = await mkdtemp(join(tmpdir(), 'berth-lock-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  const root = join(base, 'root');
  await mkdir(root);
  return root;
}

test('of many concurrent takers exactly one wins, even with a stale pid file in the root', async (t) => {
  const root = await tempRoot(t);
  // What an older berthd left behind, naming a pid that no longer runs.
  await writeFile(join(root, 'berthd.pid'), '999999999\n');
  const results = await Promise.allSettled(Array.from({ length: 8 }, () => lockRoot(root)));
  const won = results.filter((r): r is PromiseFulfilledResult<RootLock> => r.status === 'fulfilled');
  t.after(() => Promise.all(won.map((r) => r.value.release())));
  assert.equal(won.length, 1);
  for (const r of results) {
    if (r.status === 'rejected') {
      assert.ok(r.reason instanceof RootLockedError);
      assert.match((r.reason as Error).message, new RegExp(`another berthd \\(pid ${process.pid}\\) is already using root ${root}`));
    }
  }
});

test('another path to the same directory finds the same lock; release frees it', async (t) => {
  const root = await tempRoot(t);
  const alias = `${root}-alias`;
  await symlink(root, alias);
  t.after(() => rm(alias, { force: true }));
  const lock = await lockRoot(root);
  await assert.rejects(lockRoot(alias), RootLockedError);
  const other = await tempRoot(t);
  const second = await lockRoot(other);
  await second.release();
  await lock.release();
  const again = await lockRoot(alias);
  await again.release();
});

test('a process merely named berthd does not hold the root', async (t) => {
  const root = await tempRoot(t);
  const imposter = spawn('bash', ['-c', 'exec -a berthd-imposter sleep 600'], { stdio: 'ignore' });
  t.after(() => imposter.kill('SIGKILL'));
  await writeFile(join(root, 'berthd.pid'), `${imposter.pid}\n`);
  const lock = await lockRoot(root);
  await lock.release();
});

test('the lock of a holder killed with SIGKILL is free once it has exited', async (t) => {
  const root = await tempRoot(t);
  const script = `import { lockRoot } from ${JSON.stringify(new URL('../../src/daemon/root-lock.ts', import.meta.url).href)};
await lockRoot(${JSON.stringify(root)});
process.stdout.write('locked\\n');
setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => child.kill('SIGKILL'));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`lock holder exited early (${code})`)));
  });
  await assert.rejects(lockRoot(root), new RegExp(`pid ${child.pid}`));
  child.kill('SIGKILL');
  await exited;
  const lock = await lockRoot(root);
  await lock.release();
});
