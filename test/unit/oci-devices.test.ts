// Devices: the standard set and rules, CRI devices from real host nodes (and what the kernel's
// device cgroup then allows under runc), host devices for privileged containers.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Device__Output } from '../../src/cri/gen/runtime/v1/Device.ts';
import { DEFAULT_DEVICE_RULES, DEFAULT_DEVICES, PRIVILEGED_DEVICE_RULES, deviceFor, privilegedDevices } from '../../src/oci/devices.ts';
import { BerthError } from '../../src/util/errors.ts';
import { baseSpec, RUNC_SKIP, runSpec } from '../helpers/runc.ts';

const invalid = (pattern: RegExp) => (err: unknown) =>
  err instanceof BerthError && err.kind === 'invalid-argument' && pattern.test(err.message);
const dev = (host_path: string, container_path: string, permissions = 'rwm'): Device__Output => ({ host_path, container_path, permissions });

let base: string;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'berth-devices-'));
});
after(async () => {
  if (base) await rm(base, { recursive: true, force: true });
});

test('the standard devices and rules: deny first, then each standard device, ptys and mknod', () => {
  assert.deepEqual(
    DEFAULT_DEVICES.map((d) => `${d.path} ${d.type} ${d.major}:${d.minor}`),
    ['/dev/null c 1:3', '/dev/zero c 1:5', '/dev/full c 1:7', '/dev/random c 1:8', '/dev/urandom c 1:9', '/dev/tty c 5:0'],
  );
  assert.deepEqual(DEFAULT_DEVICE_RULES[0], { allow: false, access: 'rwm' });
  const allowed = (major: number, minor?: number) =>
    DEFAULT_DEVICE_RULES.some((r) => r.allow && r.type === 'c' && r.major === major && r.minor === minor && r.access === 'rwm');
  for (const d of DEFAULT_DEVICES) assert.ok(allowed(d.major as number, d.minor), d.path);
  assert.ok(allowed(136), 'pty slaves');
  assert.ok(allowed(5, 2), 'ptmx');
  assert.ok(!DEFAULT_DEVICE_RULES.some((r) => r.allow && r.type === 'b' && r.access !== 'm'), 'no block device may be opened');
});

test('a CRI device takes the host node\'s type and numbers, through a symlink', async () => {
  await symlink('/dev/zero', join(base, 'zero-link'));
  const { device, rule } = await deviceFor(dev(join(base, 'zero-link'), '/dev/xzero', 'rw'));
  assert.deepEqual(
    { type: device.type, path: device.path, major: device.major, minor: device.minor, uid: device.uid },
    { type: 'c', path: '/dev/xzero', major: 1, minor: 5, uid: 0 },
  );
  assert.equal(device.fileMode, 0o666);
  assert.deepEqual(rule, { allow: true, type: 'c', major: 1, minor: 5, access: 'rw' });
  assert.equal((await deviceFor(dev('/dev/null', '', ''))).device.path, '/dev/null', 'container path defaults to the host path');
  assert.equal((await deviceFor(dev('/dev/null', '/dev/n', ''))).rule.access, 'rwm');
});

test('bad CRI devices are refused, naming the device', async () => {
  await writeFile(join(base, 'plain'), '');
  await assert.rejects(deviceFor(dev('/dev/berth-no-such-device', '/dev/x')), invalid(/"\/dev\/berth-no-such-device".*no such device/));
  await assert.rejects(deviceFor(dev(join(base, 'plain'), '/dev/x')), invalid(/not a character or block device/));
  await assert.rejects(deviceFor(dev(base, '/dev/x')), invalid(/not a character or block device/));
  await assert.rejects(deviceFor(dev('/dev/null', 'dev/x')), invalid(/container_path must be an absolute/));
  await assert.rejects(deviceFor(dev('', '/dev/x')), invalid(/host_path must be an absolute/));
  await assert.rejects(deviceFor(dev('/dev/null', '/dev/x', 'rwx')), invalid(/permissions "rwx"/));
  await assert.rejects(deviceFor(dev('/dev/null', '/dev/x', 'rr')), invalid(/permissions "rr"/));
});

test('privileged containers get the host\'s device nodes, without ptys, console or symlinks', async () => {
  const all = await privilegedDevices();
  const nul = all.find((d) => d.path === '/dev/null');
  assert.deepEqual([nul?.type, nul?.major, nul?.minor], ['c', 1, 3]);
  assert.ok(!all.some((d) => d.path.startsWith('/dev/pts/') || d.path === '/dev/console' || d.path === '/dev/ptmx'));
  assert.equal(new Set(all.map((d) => d.path)).size, all.length);
});

// A device runc does not allow by itself (it always allows the standard ones) and that opens without
// capabilities: whichever of these the host has.
const probe = ['/dev/fuse', '/dev/loop-control'].find((p) => existsSync(p));

describe('under real runc', { skip: RUNC_SKIP || (!probe && 'no /dev/fuse or /dev/loop-control on this host') }, () => {
  const openIt = '( exec 3<>/dev/xdev ) && echo opened || echo refused';
  const run = async (permissions: string) => {
    const spec = baseSpec(['/bin/busybox', 'sh', '-c', openIt]);
    const { device, rule } = await deviceFor(dev(probe as string, '/dev/xdev', permissions));
    spec.linux.devices = [...DEFAULT_DEVICES, device];
    spec.linux.resources = { devices: [...DEFAULT_DEVICE_RULES, rule] };
    return runSpec(spec);
  };
  test('a device granted "rw" opens read-write in the container', async () => {
    const r = await run('rw');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'opened\n');
  });
  test('a device granted only "r" does not open read-write: the device cgroup refuses', async () => {
    const r = await run('r');
    assert.equal(r.stdout, 'refused\n');
    assert.match(r.stderr, /Operation not permitted/);
  });
});

describe('privileged under real runc', { skip: RUNC_SKIP }, () => {
  test('runc accepts every host device node, and the container can open one no unprivileged rule allows', async () => {
    const devices = await privilegedDevices();
    const spec = baseSpec(['/bin/busybox', 'sh', '-c', `busybox ls /dev | busybox wc -l; ${probe ? `( exec 3<>${probe} ) && echo opened` : 'echo opened'}`]);
    spec.linux.devices = devices;
    spec.linux.resources = { devices: [...PRIVILEGED_DEVICE_RULES] };
    const r = await runSpec(spec);
    assert.equal(r.code, 0, r.stderr);
    const [count, opened] = r.stdout.trim().split('\n');
    assert.ok(Number(count) >= devices.filter((d) => d.path.split('/').length === 3).length, `${count} entries in /dev`);
    assert.equal(opened, 'opened');
  });
});
