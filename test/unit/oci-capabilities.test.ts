// Capability sets from the CRI's add/drop/ambient lists and privileged mode.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { capabilities, DEFAULT_CAPABILITIES } from '../../src/oci/capabilities.ts';
import { BerthError } from '../../src/util/errors.ts';

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
  const last = Number((await readFile('/proc/sys/kernel/cap_last_cap', 'utf8')).trim());
  const all = capabilities({ privileged: false, add: ['ALL'], drop: ['CHOWN'] });
  assert.equal(all.bounding.length, last, 'every host capability but one');
  assert.ok(!all.bounding.includes('CAP_CHOWN'));
  assert.ok(all.bounding.includes('CAP_SYS_ADMIN'));
  assert.deepEqual(capabilities({ privileged: false, drop: ['ALL'], add: ['NET_ADMIN'] }).bounding, ['CAP_NET_ADMIN']);
  assert.deepEqual(capabilities({ privileged: false, drop: ['all'] }).bounding, []);
  assert.ok(capabilities({ privileged: false, drop: ['CHOWN'], add: ['CHOWN'] }).bounding.includes('CAP_CHOWN'));
});

test('privileged: every capability the host kernel knows, whatever is dropped', async () => {
  const last = Number((await readFile('/proc/sys/kernel/cap_last_cap', 'utf8')).trim());
  const caps = capabilities({ privileged: true, drop: ['ALL'] });
  assert.equal(caps.bounding.length, last + 1);
  assert.equal(caps.bounding[0], 'CAP_CHOWN');
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
