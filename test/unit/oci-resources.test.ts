// Container resources: CRI values to OCI (and what runc makes of them in a real cgroup), impossible
// values refused naming the field, and the host's oom_score_adj floor.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { LinuxContainerResources__Output } from '../../src/cri/gen/runtime/v1/LinuxContainerResources.ts';
import { clampOomScoreAdj, hostOomScoreAdjFloor, linuxResources } from '../../src/oci/resources.ts';
import { BerthError } from '../../src/util/errors.ts';
import { baseSpec, RUNC_SKIP, runSpec } from '../helpers/runc.ts';

const invalid = (pattern: RegExp) => (err: unknown) =>
  err instanceof BerthError && err.kind === 'invalid-argument' && pattern.test(err.message);

const res = (over: Partial<LinuxContainerResources__Output>): LinuxContainerResources__Output => ({
  cpu_period: 0,
  cpu_quota: 0,
  cpu_shares: 0,
  memory_limit_in_bytes: 0,
  oom_score_adj: 0,
  cpuset_cpus: '',
  cpuset_mems: '',
  hugepage_limits: [],
  unified: {},
  memory_swap_limit_in_bytes: 0,
  ...over,
});
const v1 = { cgroupVersion: 1 as const };
const v2 = { cgroupVersion: 2 as const };

test('nothing set: no limits', () => {
  assert.deepEqual(linuxResources(null, v1), {});
  assert.deepEqual(linuxResources(res({}), v1), {});
});

test('what the kubelet sends for a Burstable container maps field by field; swap equals memory unless given', () => {
  const r = linuxResources(
    res({ cpu_shares: 512, cpu_period: 100000, cpu_quota: 50000, memory_limit_in_bytes: 64 << 20, cpuset_cpus: '0-1', cpuset_mems: '0' }),
    v1,
  );
  assert.deepEqual(r, {
    cpu: { shares: 512, period: 100000, quota: 50000, cpus: '0-1', mems: '0' },
    memory: { limit: 64 << 20, swap: 64 << 20 },
  });
  assert.deepEqual(linuxResources(res({ memory_limit_in_bytes: 100, memory_swap_limit_in_bytes: 300 }), v1).memory, { limit: 100, swap: 300 });
  assert.deepEqual(linuxResources(res({ memory_limit_in_bytes: 100, memory_swap_limit_in_bytes: -1 }), v1).memory, { limit: 100, swap: -1 });
  assert.deepEqual(linuxResources(res({ cpu_quota: -1 }), v1).cpu, { quota: -1 });
  assert.deepEqual(linuxResources(res({ hugepage_limits: [{ page_size: '2MB', limit: 4 << 20 }] }), v1).hugepageLimits, [
    { pageSize: '2MB', limit: 4 << 20 },
  ]);
  assert.deepEqual(linuxResources(res({ unified: { 'memory.high': '1000000' } }), v2).unified, { 'memory.high': '1000000' });
});

test('impossible values are refused, naming the field', () => {
  const cases: Array<[Partial<LinuxContainerResources__Output>, RegExp, (1 | 2)?]> = [
    [{ cpu_shares: -2 }, /resources\.cpu_shares: -2/],
    [{ cpu_shares: 300000 }, /cpu_shares: 300000 is outside/],
    [{ cpu_quota: 50000 }, /cpu_quota: a quota of 50000 µs needs cpu_period/],
    [{ cpu_quota: 500, cpu_period: 100000 }, /cpu_quota: 500 µs is below/],
    [{ cpu_quota: -5, cpu_period: 100000 }, /cpu_quota: -5/],
    [{ cpu_period: 10 }, /cpu_period: 10 µs is outside/],
    [{ cpu_period: 2_000_000 }, /cpu_period/],
    [{ memory_limit_in_bytes: -1 }, /memory_limit_in_bytes: -1 is negative/],
    [{ memory_limit_in_bytes: 200, memory_swap_limit_in_bytes: 100 }, /memory_swap_limit_in_bytes: 100 is below memory_limit_in_bytes 200/],
    [{ memory_swap_limit_in_bytes: 100 }, /swap limit needs memory_limit_in_bytes/],
    [{ cpuset_cpus: '0-a' }, /cpuset_cpus: "0-a"/],
    [{ cpuset_cpus: '3-1' }, /range 3-1 runs backwards/],
    [{ cpuset_mems: '0,,1' }, /cpuset_mems/],
    [{ hugepage_limits: [{ page_size: '2M', limit: 1 }] }, /page size "2M"/],
    [{ hugepage_limits: [{ page_size: '2MB', limit: 1 }, { page_size: '2MB', limit: 2 }] }, /2MB is given twice/],
    [{ hugepage_limits: [{ page_size: '1GB', limit: -1 }] }, /limit -1 for 1GB/],
    [{ unified: { 'memory.high': '1' } }, /unified: is for cgroup v2/, 1],
    [{ unified: { '../etc/passwd': 'x' } }, /"..\/etc\/passwd" is not a cgroup v2 file/, 2],
  ];
  for (const [over, pattern, version] of cases) {
    assert.throws(() => linuxResources(res(over), { cgroupVersion: version ?? 1 }), invalid(pattern), JSON.stringify(over));
  }
});

test('oom_score_adj: the host floor is probed without touching our own score, and values are clamped to it', async () => {
  const before = (await readFile('/proc/self/oom_score_adj', 'utf8')).trim();
  const floor = await hostOomScoreAdjFloor();
  assert.ok(floor >= -1000 && floor <= Number(before), `floor ${floor}`);
  assert.equal((await readFile('/proc/self/oom_score_adj', 'utf8')).trim(), before, "berthd's own score is unchanged");
  assert.equal(clampOomScoreAdj(-998, 0), 0);
  assert.equal(clampOomScoreAdj(-998, -1000), -998);
  assert.equal(clampOomScoreAdj(1000, 0), 1000);
  assert.throws(() => clampOomScoreAdj(1001, 0), invalid(/oom_score_adj: 1001 is outside/));
  await assert.rejects(hostOomScoreAdjFloor(AbortSignal.abort()), (err: unknown) => err instanceof BerthError && err.kind === 'unavailable');
});

const v1Host = existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes');

describe('under real runc (cgroup v1)', { skip: RUNC_SKIP || (!v1Host && 'this host has no cgroup v1 memory controller') }, () => {
  test('runc applies the limits: the container reads them back from its own cgroup', async () => {
    const spec = baseSpec([
      '/bin/busybox',
      'sh',
      '-c',
      'busybox cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.shares',
    ]);
    spec.linux.resources = {
      ...spec.linux.resources,
      ...linuxResources(res({ memory_limit_in_bytes: 48 << 20, cpu_period: 100000, cpu_quota: 25000, cpu_shares: 256 }), v1),
    };
    const r = await runSpec(spec);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${48 << 20}\n25000\n256\n`);
  });
});
