// cgroup v1 (this VM) against a real cgroup with a real process in it: version and stats.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { readCgroupStats } from '../../src/cgroups/stats.ts';
import { cgroupVersion } from '../../src/cgroups/version.ts';
import { until } from '../helpers/poll.ts';

const ROOT = '/sys/fs/cgroup';
const CONTROLLERS = ['cpu', 'cpuacct', 'memory', 'pids'];
const usable = process.getuid?.() === 0 && CONTROLLERS.every((c) => existsSync(join(ROOT, c, 'cgroup.procs')));

describe('a real v1 cgroup', { skip: usable ? false : 'needs root and the v1 cpu, cpuacct, memory and pids controllers' }, () => {
  const name = `berth-test-${randomBytes(6).toString('hex')}`;
  const path = `/${name}`;
  let child: ChildProcess | undefined;
  let exited: Promise<unknown> | undefined;

  before(async () => {
    for (const c of CONTROLLERS) await mkdir(join(ROOT, c, name));
    await writeFile(join(ROOT, 'memory', name, 'memory.limit_in_bytes'), String(64 << 20));
    // The shell joins the cgroup before exec'ing sleep, so the sleep's memory and CPU are charged to it.
    const join_ = CONTROLLERS.map((c) => `echo $$ > ${join(ROOT, c, name, 'cgroup.procs')}`).join(' && ');
    child = spawn('/bin/sh', ['-c', `${join_} && exec /bin/busybox sleep 1000`], { stdio: 'ignore' });
    exited = new Promise((resolve) => child?.once('exit', resolve));
    await until('the process to join the cgroup', async () => (await readFile(join(ROOT, 'pids', name, 'pids.current'), 'utf8')).trim() === '1');
  });
  after(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    for (const c of CONTROLLERS) await rmdir(join(ROOT, c, name)).catch(() => undefined);
  });

  test('the host counts as cgroup v1', async () => {
    assert.equal(await cgroupVersion(ROOT), 1);
  });

  test('stats: CPU used, memory charged with its limit, one process', async () => {
    const s = await readCgroupStats(path);
    assert.ok(s.cpu.usageNanos > 0, `cpu ${s.cpu.usageNanos}`);
    assert.ok(s.memory.usage > 0, `usage ${s.memory.usage}`);
    assert.ok(s.memory.workingSet > 0 && s.memory.workingSet <= s.memory.usage);
    // memory.stat counters reach the file when the kernel flushes its per-CPU stats (every ~2 s).
    await until('page faults to show in memory.stat', async () => (await readCgroupStats(path)).memory.pageFaults > 0);
    assert.equal(s.memory.limit, 64 << 20);
    assert.equal(s.pids.current, 1);
    const rootStats = await readCgroupStats('/');
    assert.equal(rootStats.memory.limit, undefined, 'the root memory cgroup is unlimited');
  });
});
