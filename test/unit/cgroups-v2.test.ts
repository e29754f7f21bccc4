// cgroup v2 (most production nodes; this VM has none): version detection, cgroupsPath forms for both
// drivers, and stats on files shaped exactly like the kernel's, under a temp root.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cgroupDir, cgroupRelativePath, cgroupsPathFor } from '../../src/cgroups/path.ts';
import { cgroupVersion } from '../../src/cgroups/version.ts';
import { readCgroupStats } from '../../src/cgroups/stats.ts';
import { BerthError } from '../../src/util/errors.ts';

const kind = (k: string, pattern: RegExp) => (err: unknown) => err instanceof BerthError && err.kind === k && pattern.test(err.message);

// As a 6.x kernel prints them (values from a real container, abridged only in the number of keys).
const MEMORY_STAT = `anon 9035776
file 20795392
kernel 1511424
kernel_stack 98304
pagetables 126976
sec_pagetables 0
percpu 0
sock 0
vmalloc 0
shmem 0
zswap 0
zswapped 0
file_mapped 10137600
file_dirty 0
file_writeback 0
swapcached 0
anon_thp 0
file_thp 0
shmem_thp 0
inactive_anon 9027584
active_anon 8192
inactive_file 12394496
active_file 8400896
unevictable 0
slab_reclaimable 790808
slab_unreclaimable 352472
slab 1143280
workingset_refault_anon 0
workingset_refault_file 0
workingset_activate_anon 0
workingset_activate_file 0
workingset_restore_anon 0
workingset_restore_file 0
workingset_nodereclaim 0
pgscan 0
pgsteal 0
pgscan_kswapd 0
pgscan_direct 0
pgsteal_kswapd 0
pgsteal_direct 0
pgfault 17523
pgmajfault 43
pgrefill 0
pgactivate 2051
pgdeactivate 0
pglazyfree 0
pglazyfreed 0
thp_fault_alloc 0
thp_collapse_alloc 0
`;
const CPU_STAT = `usage_usec 1234567
user_usec 1000000
system_usec 234567
core_sched.force_idle_usec 0
nr_periods 0
nr_throttled 0
throttled_usec 0
nr_bursts 0
burst_usec 0
`;

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-cgv2-'));
  await writeFile(join(root, 'cgroup.controllers'), 'cpuset cpu io memory hugetlb pids rdma misc\n');
});
after(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

async function fakeCgroup(rel: string, files: Record<string, string>): Promise<string> {
  const dir = join(root, rel);
  await mkdir(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  return dir;
}

test('version: a v2 root has cgroup.controllers; a hybrid host (v1 controllers, v2 at /unified) is v1', async () => {
  assert.equal(await cgroupVersion(root), 2);
  const hybrid = join(root, 'hybrid');
  await mkdir(join(hybrid, 'unified'), { recursive: true });
  await writeFile(join(hybrid, 'unified/cgroup.controllers'), 'hugetlb\n');
  await mkdir(join(hybrid, 'memory'));
  assert.equal(await cgroupVersion(hybrid), 1);
});

test('cgroupsPath for each driver, and where it lives on disk', () => {
  assert.equal(cgroupsPathFor('cgroupfs', '/kubepods/besteffort/pod1234', 'abc'), '/kubepods/besteffort/pod1234/abc');
  assert.equal(cgroupsPathFor('cgroupfs', 'kubepods', 'abc'), '/kubepods/abc');
  assert.equal(cgroupsPathFor('cgroupfs', '', 'abc'), '/abc');
  assert.equal(cgroupsPathFor('systemd', 'kubepods-besteffort-pod12.slice', 'abc'), 'kubepods-besteffort-pod12.slice:berth:abc');
  assert.equal(cgroupsPathFor('systemd', '', 'abc'), 'system.slice:berth:abc');
  assert.equal(cgroupRelativePath('kubepods-besteffort-pod12.slice:berth:abc'), 'kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/berth-abc.scope');
  assert.equal(cgroupRelativePath('/kubepods/pod1/abc'), 'kubepods/pod1/abc');
  assert.equal(cgroupDir('/sys/fs/cgroup', '/a/b', 'memory'), '/sys/fs/cgroup/memory/a/b');
  assert.throws(() => cgroupsPathFor('systemd', '/kubepods/besteffort', 'abc'), kind('invalid-argument', /not a systemd slice name/));
  assert.throws(() => cgroupsPathFor('cgroupfs', '/kubepods/../..', 'abc'), kind('invalid-argument', /not a cgroupfs path/));
  assert.throws(() => cgroupsPathFor('cgroupfs', '/kubepods', '../x'), kind('invalid-argument', /cgroup name "..\/x"/));
  assert.equal(cgroupRelativePath('../../etc'), 'etc', '".." stops at the hierarchy root');
});

test('v2 stats: CPU from cpu.stat, working set = current − inactive_file, rss = anon, faults, limit, pids', async () => {
  await fakeCgroup('kubepods.slice/kubepods-burstable.slice/berth-c1.scope', {
    'cpu.stat': CPU_STAT,
    'memory.current': '30117888\n',
    'memory.stat': MEMORY_STAT,
    'memory.max': '67108864\n',
    'pids.current': '3\n',
  });
  const s = await readCgroupStats('kubepods-burstable.slice:berth:c1', { root });
  assert.deepEqual(
    { cpu: s.cpu, memory: s.memory, pids: s.pids },
    {
      cpu: { usageNanos: 1234567000 },
      memory: { usage: 30117888, workingSet: 30117888 - 12394496, rss: 9035776, pageFaults: 17523, majorPageFaults: 43, limit: 67108864 },
      pids: { current: 3 },
    },
  );
  assert.ok(s.timestamp > 1.6e18, 'nanoseconds since the epoch');
});

test('v2 stats: "max" is no limit; inactive_file above usage gives a zero working set; no pids controller reads 0', async () => {
  await fakeCgroup('c2', {
    'cpu.stat': CPU_STAT,
    'memory.current': '4096\n',
    'memory.stat': MEMORY_STAT,
    'memory.max': 'max\n',
  });
  const s = await readCgroupStats('/c2', { root, version: 2 });
  assert.equal(s.memory.limit, undefined);
  assert.equal(s.memory.workingSet, 0);
  assert.equal(s.pids.current, 0);
  await assert.rejects(readCgroupStats('/gone', { root }), kind('not-found', /cgroup \/gone does not exist/));
});
