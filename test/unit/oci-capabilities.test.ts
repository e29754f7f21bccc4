// Capability sets from the CRI's add/drop/ambient lists and privileged mode.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { capabilities, DEFAULT_CAPABILITIES } from '../../src/oci/capabilities.ts';
import { BerthError } from '../../src/util/errors.ts';
import { baseSpec, RUNC_SKIP, runSpec } from '../helpers/runc.ts';

/** capability.h by number, written out here as an independent check of the module's table. */
const CAP_NAMES = (
  'CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE NET_BIND_SERVICE ' +
  'NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN ' +
  'SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE ' +
  'MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE'
)
  .split(' ')
  .map((n) => `CAP_${n}`);

/** The capabilities this test process (like berthd) may hand on: known to the kernel and in our bounding set. */
async function hostCaps(): Promise<{ count: number; missing: number[] }> {
  const last = Number((await readFile('/proc/sys/kernel/cap_last_cap', 'utf8')).trim());
  const bnd = BigInt(`0x${/^CapBnd:\s*([0-9a-f]+)$/m.exec(await readFile('/proc/self/status', 'utf8'))?.[1]}`);
  const missing = [...Array(last + 1).keys()].filter((i) => !((bnd >> BigInt(i)) & 1n));
  return { count: last + 1 - missing.length, missing };
}

const invalid = (pattern: RegExp) => (err: unknown) =>
  err instanceof BerthError && err.kind === 'invalid-argument' && pattern.test(err.message);

test('no add or drop: the default set in bounding, effective and permitted; no inheritable or ambient', () => {
  const caps = capabilities({ privileged: false });
  assert.deepEqual(new Set(caps.bounding), new Set(DEFAULT_CAPABILITIES));
  assert.equal(DEFAULT_CAPABILITIES.length, 14);
  assert.deepEqual(caps.effective, caps.bounding);
  assert.deepEqual(caps.permitted, caps.bounding);
  assert.equal(caps.inheritable, undefined);
  assert.equal(caps.ambient, undefined);
  assert.ok(!caps.bounding.includes('CAP_SYS_ADMIN'));
});

test('names are normalised: lower case and without the CAP_ prefix', () => {
  const caps = capabilities({ privileged: false, add: ['net_admin', 'CAP_SYS_TIME', ' sys_nice '], drop: ['kill', 'CAP_MKNOD'] });
  for (const c of ['CAP_NET_ADMIN', 'CAP_SYS_TIME', 'CAP_SYS_NICE']) assert.ok(caps.bounding.includes(c), c);
  for (const c of ['CAP_KILL', 'CAP_MKNOD']) assert.ok(!caps.bounding.includes(c), c);
  assert.equal(new Set(caps.bounding).size, caps.bounding.length, 'no duplicates');
});

test('ALL: add ALL minus a drop; drop ALL plus an add; drop wins over the default but not over an add', async () => {
  const all = capabilities({ privileged: false, add: ['ALL'], drop: ['CHOWN'] });
  assert.equal(all.bounding.length, (await hostCaps()).count - 1, 'every host capability but one');
  assert.ok(!all.bounding.includes('CAP_CHOWN'));
  assert.ok(all.bounding.includes('CAP_SYS_ADMIN'));
  assert.deepEqual(capabilities({ privileged: false, drop: ['ALL'], add: ['NET_ADMIN'] }).bounding, ['CAP_NET_ADMIN']);
  assert.deepEqual(capabilities({ privileged: false, drop: ['all'] }).bounding, []);
  assert.ok(capabilities({ privileged: false, drop: ['CHOWN'], add: ['CHOWN'] }).bounding.includes('CAP_CHOWN'));
});

test('privileged: every capability the kernel knows and we hold, whatever is dropped', async () => {
  const caps = capabilities({ privileged: true, drop: ['ALL'] });
  assert.equal(caps.bounding.length, (await hostCaps()).count);
  const { count, missing } = await hostCaps();
  const known = CAP_NAMES.slice(0, count + missing.length);
  assert.deepEqual(caps.bounding, known.filter((_, i) => !missing.includes(i)), 'by name, in kernel order');
  assert.ok(caps.permitted.includes('CAP_SYS_ADMIN'));
});

test('ambient capabilities are raised in every set', () => {
  const caps = capabilities({ privileged: false, drop: ['ALL'], addAmbient: ['NET_BIND_SERVICE'] });
  assert.deepEqual(caps.ambient, ['CAP_NET_BIND_SERVICE']);
  assert.deepEqual(caps.inheritable, ['CAP_NET_BIND_SERVICE']);
  assert.deepEqual(caps.permitted, ['CAP_NET_BIND_SERVICE']);
  assert.throws(() => capabilities({ privileged: false, addAmbient: ['ALL'] }), invalid(/ALL is not allowed/));
});

test('unknown capability names are refused, naming the field and the name', () => {
  assert.throws(() => capabilities({ privileged: false, add: ['CAP_FLY'] }), invalid(/add_capabilities: unknown capability "CAP_FLY"/));
  assert.throws(() => capabilities({ privileged: false, drop: ['NET_ADMIN', 'teleport'] }), invalid(/drop_capabilities.*"teleport"/));
  assert.throws(() => capabilities({ privileged: false, add: ['CAP_'] }), invalid(/"CAP_"/));
});

test('a capability berthd does not hold itself is refused by name rather than left to fail in runc', async (t) => {
  const { missing } = await hostCaps();
  if (missing.length === 0) return t.skip('this process holds every capability the kernel knows');
  const number = missing[0] as number;
  const name = CAP_NAMES[number] as string;
  assert.throws(
    () => capabilities({ privileged: false, add: [name] }),
    (err: unknown) => err instanceof BerthError && err.kind === 'failed-precondition' && err.message.startsWith(`${name} cannot be given`),
  );
  assert.ok(!capabilities({ privileged: true }).bounding.includes(name));
});

describe('under real runc', { skip: RUNC_SKIP }, () => {
  const capLine = async (caps: ReturnType<typeof capabilities>, field: string): Promise<bigint> => {
    const spec = baseSpec(['/bin/busybox', 'grep', `^${field}:`, '/proc/self/status']);
    spec.process = { ...(spec.process as NonNullable<typeof spec.process>), capabilities: caps, noNewPrivileges: false };
    const r = await runSpec(spec);
    assert.equal(r.code, 0, r.stderr);
    return BigInt(`0x${r.stdout.split(/\s+/)[1]}`);
  };
  test('the default set is the mask every Docker-compatible runtime shows (a80425fb)', async () => {
    assert.equal(await capLine(capabilities({ privileged: false }), 'CapEff'), 0xa80425fbn);
    assert.equal(await capLine(capabilities({ privileged: false }), 'CapBnd'), 0xa80425fbn);
  });
  test('drop ALL + add NET_BIND_SERVICE leaves exactly bit 10; privileged has every bit we hold', async () => {
    assert.equal(await capLine(capabilities({ privileged: false, drop: ['ALL'], add: ['NET_BIND_SERVICE'] }), 'CapEff'), 1n << 10n);
    const bnd = BigInt(`0x${/^CapBnd:\s*([0-9a-f]+)$/m.exec(await readFile('/proc/self/status', 'utf8'))?.[1]}`);
    assert.equal(await capLine(capabilities({ privileged: true }), 'CapEff'), bnd, 'exactly our own bounding set');
  });
  test('an ambient capability survives into a non-root process', async () => {
    const spec = baseSpec(['/bin/busybox', 'grep', '^CapAmb:', '/proc/self/status']);
    spec.process = {
      ...(spec.process as NonNullable<typeof spec.process>),
      user: { uid: 1000, gid: 1000 },
      capabilities: capabilities({ privileged: false, drop: ['ALL'], addAmbient: ['NET_BIND_SERVICE'] }),
    };
    const r = await runSpec(spec);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(BigInt(`0x${r.stdout.split(/\s+/)[1]}`), 1n << 10n);
  });
});
