// The default container filesystems, the CRI's bind mounts (validation, created host paths, symlinks,
// ordering, propagation against real shared/slave/private host mounts) and masked/read-only paths.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Mount__Output } from '../../src/cri/gen/runtime/v1/Mount.ts';
import { criMounts, defaultMounts } from '../../src/oci/mounts.ts';
import { DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, protectedPaths } from '../../src/oci/paths.ts';
import { BerthError } from '../../src/util/errors.ts';
import { capabilities } from '../../src/oci/capabilities.ts';
import { baseSpec, RUNC_SKIP, runSpec } from '../helpers/runc.ts';
import { ROOT_ONLY } from '../helpers/root.ts';

const run = promisify(execFile);

function mount(over: Partial<Mount__Output>): Mount__Output {
  return {
    container_path: '/data',
    host_path: '/tmp',
    readonly: false,
    selinux_relabel: false,
    propagation: 'PROPAGATION_PRIVATE',
    uidMappings: [],
    gidMappings: [],
    recursive_read_only: false,
    image: null,
    image_sub_path: '',
    mount_options: [],
    ...over,
  };
}

const invalid = (pattern: RegExp) => (err: unknown) =>
  err instanceof BerthError && err.kind === 'invalid-argument' && pattern.test(err.message);

let base: string;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'berth-mounts-'));
});
after(async () => {
  if (base) await rm(base, { recursive: true, force: true });
});

test('default mounts: proc, /dev, devpts, mqueue, read-only sysfs and cgroup; privileged gets them writable', () => {
  const byDest = new Map(defaultMounts().map((m) => [m.destination, m]));
  assert.deepEqual([...byDest.keys()], ['/proc', '/dev', '/dev/pts', '/dev/mqueue', '/sys', '/sys/fs/cgroup']);
  assert.equal(byDest.get('/proc')?.type, 'proc');
  assert.equal(byDest.get('/dev/pts')?.type, 'devpts');
  assert.ok(byDest.get('/dev/pts')?.options?.includes('newinstance'));
  assert.ok(byDest.get('/sys')?.options?.includes('ro'));
  assert.ok(byDest.get('/sys/fs/cgroup')?.options?.includes('ro'));
  const priv = new Map(defaultMounts({ privileged: true }).map((m) => [m.destination, m]));
  assert.ok(priv.get('/sys')?.options?.includes('rw'));
  assert.ok(!priv.get('/sys/fs/cgroup')?.options?.includes('ro'));
  // A fresh array each call: a caller editing one spec must not change the next container's.
  defaultMounts()[0]?.options?.push('x');
  assert.ok(!defaultMounts()[0]?.options?.includes('x'));
});

test('bad CRI mounts are refused, naming the mount', async () => {
  await assert.rejects(criMounts([mount({ container_path: 'data' })]), invalid(/"data".*container_path must be an absolute/));
  await assert.rejects(criMounts([mount({ container_path: '' })]), invalid(/container_path/));
  await assert.rejects(criMounts([mount({ container_path: '/./' })]), invalid(/over the container's root/));
  await assert.rejects(criMounts([mount({ host_path: '' })]), invalid(/→ "\/data".*host_path must be an absolute/));
  await assert.rejects(criMounts([mount({ host_path: 'rel/dir' })]), invalid(/"rel\/dir"/));
  await assert.rejects(criMounts([mount({ recursive_read_only: true })]), invalid(/recursive_read_only needs readonly/));
  const wouldBeMade = join(base, 'not-made');
  await assert.rejects(criMounts([mount({ host_path: wouldBeMade }), mount({ container_path: 'bad' })]), invalid(/"bad"/));
  await assert.rejects(stat(wouldBeMade), { code: 'ENOENT' }, 'a refused request creates no host directory');
  await assert.rejects(
    criMounts([mount({ uidMappings: [{ container_id: 0, host_id: 1000, length: 1 }] })]),
    (err: unknown) => err instanceof BerthError && err.kind === 'unimplemented',
  );
});

test('bind mounts: read-only flag, private propagation, parents before children, symlinks resolved, missing host dirs created', async () => {
  const real = join(base, 'real');
  await mkdir(real);
  await symlink(real, join(base, 'link'));
  const missing = join(base, 'made', 'by', 'us');
  const { mounts, rootfsPropagation } = await criMounts([
    mount({ container_path: '/a/b/c', host_path: join(base, 'link'), readonly: true }),
    mount({ container_path: '/a/', host_path: missing }),
    mount({ container_path: '/x/y', host_path: real, readonly: true, recursive_read_only: true }),
  ]);
  assert.equal(rootfsPropagation, undefined);
  assert.deepEqual(
    mounts.map((m) => m.destination),
    ['/a', '/x/y', '/a/b/c'],
  );
  assert.deepEqual(mounts[0], { destination: '/a', type: 'bind', source: missing, options: ['rbind', 'rprivate', 'rw'] });
  assert.equal((await stat(missing)).isDirectory(), true);
  assert.equal(mounts[1]?.source, real);
  assert.deepEqual(mounts[1]?.options, ['rbind', 'rprivate', 'ro', 'rro']);
  assert.equal(mounts[2]?.source, real, 'the symlink is resolved to its target');
  assert.ok(mounts[2]?.options?.includes('ro'));
});

describe('propagation against real host mounts', ROOT_ONLY, () => {
  let shared: string;
  let slave: string;
  let priv: string;
  const made: string[] = [];
  before(async () => {
    shared = join(base, 'shared dir'); // a space: mountinfo escapes it as \040
    slave = join(base, 'slave');
    priv = join(base, 'private');
    for (const d of [shared, slave, priv]) await mkdir(d);
    await run('mount', ['-t', 'tmpfs', 'berth-test', shared]);
    made.push(shared);
    await run('mount', ['--make-shared', shared]);
    await run('mount', ['--bind', shared, slave]);
    made.push(slave);
    await run('mount', ['--make-slave', slave]);
    await run('mount', ['-t', 'tmpfs', 'berth-test', priv]);
    made.push(priv);
    await run('mount', ['--make-private', priv]);
    await mkdir(join(shared, 'sub'));
  });
  after(async () => {
    for (const d of made.reverse()) await run('umount', ['-l', d]).catch(() => undefined);
  });

  test('BIDIRECTIONAL on a shared mount → rshared, and the rootfs becomes rshared', async () => {
    const r = await criMounts([
      mount({ container_path: '/h2c', host_path: slave, propagation: 'PROPAGATION_HOST_TO_CONTAINER' }),
      mount({ container_path: '/bi', host_path: join(shared, 'sub'), propagation: 'PROPAGATION_BIDIRECTIONAL' }),
    ]);
    assert.deepEqual(r.mounts.map((m) => m.options?.[1]), ['rslave', 'rshared']);
    assert.equal(r.rootfsPropagation, 'rshared');
  });

  test('HOST_TO_CONTAINER on a slave mount → rslave, rootfs rslave', async () => {
    const r = await criMounts([mount({ host_path: slave, propagation: 'PROPAGATION_HOST_TO_CONTAINER' })]);
    assert.deepEqual(r.mounts[0]?.options, ['rbind', 'rslave', 'rw']);
    assert.equal(r.rootfsPropagation, 'rslave');
  });

  test('propagation from a mount that cannot give it is refused, naming the mount point', async () => {
    await assert.rejects(
      criMounts([mount({ host_path: priv, propagation: 'PROPAGATION_HOST_TO_CONTAINER' })]),
      invalid(new RegExp(`HOST_TO_CONTAINER.*${priv}.*private`)),
    );
    await assert.rejects(
      criMounts([mount({ host_path: slave, propagation: 'PROPAGATION_BIDIRECTIONAL' })]),
      invalid(new RegExp(`BIDIRECTIONAL.*is on ${slave} which is not shared`)),
    );
  });
});

test('masked and read-only paths: defaults, CRI lists replace them, privileged gets none', () => {
  const d = protectedPaths({ privileged: false });
  assert.ok(d.maskedPaths.includes('/proc/kcore'));
  assert.ok(d.readonlyPaths.includes('/proc/sys'));
  assert.deepEqual(d.maskedPaths, [...DEFAULT_MASKED_PATHS]);
  assert.deepEqual(protectedPaths({ privileged: false, maskedPaths: [], readonlyPaths: [] }).readonlyPaths, [
    ...DEFAULT_READONLY_PATHS,
  ]);
  const given = protectedPaths({ privileged: false, maskedPaths: ['/proc/foo', '/proc/foo'], readonlyPaths: ['/proc/bar'] });
  assert.deepEqual(given, { maskedPaths: ['/proc/foo'], readonlyPaths: ['/proc/bar'] });
  assert.deepEqual(protectedPaths({ privileged: true, maskedPaths: ['/proc/foo'] }), { maskedPaths: [], readonlyPaths: [] });
  assert.throws(() => protectedPaths({ privileged: false, readonlyPaths: ['proc/x'] }), invalid(/readonly_paths: "proc\/x"/));
});

describe('bind mounts under real runc', { skip: RUNC_SKIP }, () => {
  let src: string;
  let mountedSub = false;
  before(async () => {
    src = join(base, 'vol');
    await mkdir(join(src, 'sub'), { recursive: true });
    await run('mount', ['-t', 'tmpfs', 'berth-test', join(src, 'sub')]);
    mountedSub = true;
  });
  after(async () => {
    if (mountedSub) await run('umount', ['-l', join(src, 'sub')]).catch(() => undefined);
  });

  const touch = async (over: Partial<Mount__Output>): Promise<string> => {
    const spec = baseSpec(['/bin/busybox', 'sh', '-c', 'busybox touch /data/top; echo top=$?; busybox touch /data/sub/below; echo sub=$?']);
    spec.mounts.push(...(await criMounts([mount({ host_path: src, ...over })])).mounts);
    const r = await runSpec(spec);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };

  test('read-write: the container writes through to the host', async () => {
    assert.equal(await touch({}), 'top=0\nsub=0\n');
    assert.ok((await stat(join(src, 'top'))).isFile());
    await rm(join(src, 'top'));
  });
  test('readonly alone leaves a submount writable; recursive_read_only closes it too', async () => {
    assert.equal(await touch({ readonly: true }), 'top=1\nsub=0\n');
    assert.equal(await touch({ readonly: true, recursive_read_only: true }), 'top=1\nsub=1\n');
  });
});

describe('masked and read-only paths under real runc', { skip: RUNC_SKIP }, () => {
  const script = 'busybox cat /proc/interrupts | busybox wc -c; echo berth-x > /proc/sys/kernel/hostname; echo write=$?; busybox hostname';
  test('defaults: /proc/interrupts reads empty, /proc/sys is read-only', async () => {
    const r = await runSpec(baseSpec(['/bin/busybox', 'sh', '-c', script]));
    assert.equal(r.stdout, '0\nwrite=1\nberth-test\n');
    assert.match(r.stderr, /Read-only file system/);
  });
  test('privileged (no masked or read-only paths, all capabilities): both are open', async () => {
    const spec = baseSpec(['/bin/busybox', 'sh', '-c', script]);
    spec.linux = { ...spec.linux, ...protectedPaths({ privileged: true }) };
    spec.process = { ...(spec.process as NonNullable<typeof spec.process>), capabilities: capabilities({ privileged: true }) };
    spec.mounts = defaultMounts({ privileged: true });
    const r = await runSpec(spec);
    assert.equal(r.code, 0, r.stderr);
    const [bytes, write, hostname] = r.stdout.trim().split('\n');
    assert.ok(Number(bytes) > 0, `interrupts readable: ${bytes}`);
    assert.deepEqual([write, hostname], ['write=0', 'berth-x'], 'only the container’s own UTS namespace changes');
  });
});
