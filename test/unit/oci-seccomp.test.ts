// seccomp: the RuntimeDefault profile's shape and what the kernel does with it under real runc,
// Unconfined/privileged, and Localhost profile files (OCI and Docker forms, bad ones refused).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { capabilities } from '../../src/oci/capabilities.ts';
import { hostSeccompArchitectures, seccompFor } from '../../src/oci/seccomp.ts';
import type { OciSeccomp } from '../../src/oci/types.ts';
import { BerthError } from '../../src/util/errors.ts';
import type { SecurityProfile__Output } from '../../src/cri/gen/runtime/v1/SecurityProfile.ts';
import { baseSpec, RUNC_SKIP, runSpec } from '../helpers/runc.ts';

const invalid = (pattern: RegExp) => (err: unknown) =>
  err instanceof BerthError && err.kind === 'invalid-argument' && pattern.test(err.message);
const profile = (profile_type: SecurityProfile__Output['profile_type'], localhost_ref = ''): SecurityProfile__Output => ({
  profile_type,
  localhost_ref,
});
const allowed = (s: OciSeccomp | undefined, name: string): boolean =>
  !!s?.syscalls?.some((r) => r.action === 'SCMP_ACT_ALLOW' && !r.args && r.names.includes(name));

let base: string;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'berth-seccomp-'));
});
after(async () => {
  if (base) await rm(base, { recursive: true, force: true });
});

test('RuntimeDefault: EPERM by default, an allow-list of ordinary syscalls, dangerous ones left out', async () => {
  const s = await seccompFor(profile('RuntimeDefault'), { privileged: false });
  assert.equal(s?.defaultAction, 'SCMP_ACT_ERRNO');
  assert.equal(s?.defaultErrnoRet, 1);
  assert.deepEqual(s?.architectures, hostSeccompArchitectures());
  for (const name of ['read', 'write', 'execve', 'openat', 'futex', 'chroot', 'ptrace']) assert.ok(allowed(s, name), name);
  for (const name of ['mount', 'umount2', 'unshare', 'setns', 'reboot', 'kexec_load', 'init_module', 'bpf', 'keyctl', 'add_key', 'clock_settime']) {
    assert.ok(!s?.syscalls?.some((r) => r.action === 'SCMP_ACT_ALLOW' && r.names.includes(name)), `${name} is not allowed`);
  }
  const clone = s?.syscalls?.find((r) => r.names.includes('clone'));
  assert.equal(clone?.args?.[0]?.op, 'SCMP_CMP_MASKED_EQ', 'clone only without namespace flags');
  assert.equal(s?.syscalls?.find((r) => r.names.includes('clone3'))?.errnoRet, 38, 'clone3 says ENOSYS so libc falls back');
  assert.equal(s?.syscalls?.filter((r) => r.names.includes('personality')).length, 5);
  assert.deepEqual(await seccompFor(null, { privileged: false, legacyPath: 'runtime/default' }), s);
  assert.deepEqual(await seccompFor(null, { privileged: false, legacyPath: 'docker/default' }), s);
});

test('RuntimeDefault follows the capabilities: CAP_SYS_ADMIN opens mount and clone, dropping CAP_SYS_CHROOT closes chroot', async () => {
  const admin = await seccompFor(profile('RuntimeDefault'), { privileged: false, capabilities: capabilities({ privileged: false, add: ['SYS_ADMIN'] }).bounding });
  assert.ok(allowed(admin, 'mount'));
  assert.ok(allowed(admin, 'clone'), 'clone without the flag mask');
  assert.ok(!admin?.syscalls?.some((r) => r.names.includes('clone3') && r.action === 'SCMP_ACT_ERRNO'));
  const noChroot = await seccompFor(profile('RuntimeDefault'), { privileged: false, capabilities: capabilities({ privileged: false, drop: ['SYS_CHROOT'] }).bounding });
  assert.ok(!allowed(noChroot, 'chroot'));
});

test('Unconfined, no profile at all (the CRI default) and privileged containers get no filter', async () => {
  assert.equal(await seccompFor(profile('Unconfined'), { privileged: false }), undefined);
  assert.equal(await seccompFor(null, { privileged: false }), undefined);
  assert.equal(await seccompFor(undefined, { privileged: false, legacyPath: '' }), undefined);
  assert.equal(await seccompFor(null, { privileged: false, legacyPath: 'unconfined' }), undefined);
  assert.equal(
    await seccompFor(profile('Unconfined'), { privileged: false, legacyPath: 'runtime/default' }),
    undefined,
    'the SecurityProfile wins over the deprecated string',
  );
  await assert.rejects(seccompFor(null, { privileged: false, legacyPath: '/tmp/profile.json' }), invalid(/seccomp_profile_path "\/tmp\/profile.json" is not/));
  assert.equal(await seccompFor(profile('RuntimeDefault'), { privileged: true }), undefined);
  assert.equal(await seccompFor(profile('Localhost', '/nonexistent'), { privileged: true }), undefined);
});

test('Localhost: an OCI profile file is read and validated; Docker form with archMap and conditions resolved', async () => {
  const oci = join(base, 'oci.json');
  await writeFile(
    oci,
    JSON.stringify({
      defaultAction: 'SCMP_ACT_ALLOW',
      architectures: ['SCMP_ARCH_X86_64'],
      syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 13, args: [] }],
    }),
  );
  assert.deepEqual(await seccompFor(profile('Localhost', oci), { privileged: false }), {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64'],
    syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 }],
  });

  const native = hostSeccompArchitectures()[0] ?? 'SCMP_ARCH_X86_64';
  const docker = join(base, 'docker.json');
  await writeFile(
    docker,
    JSON.stringify({
      defaultAction: 'SCMP_ACT_ERRNO',
      archMap: [
        { architecture: native, subArchitectures: ['SCMP_ARCH_SUB'] },
        { architecture: 'SCMP_ARCH_OTHER', subArchitectures: ['SCMP_ARCH_NOPE'] },
      ],
      syscalls: [
        { name: 'read', action: 'SCMP_ACT_ALLOW' },
        { names: ['mount'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_ADMIN'] } },
        { names: ['chroot'], action: 'SCMP_ACT_ALLOW', excludes: { caps: ['CAP_SYS_ADMIN'] } },
      ],
    }),
  );
  const d = await seccompFor(profile('Localhost', 'docker.json'), { privileged: false, localhostDir: base });
  assert.deepEqual(await seccompFor(null, { privileged: false, legacyPath: `localhost/${docker}` }), d, 'the deprecated localhost/<path> form');
  assert.deepEqual(d?.architectures, [native, 'SCMP_ARCH_SUB']);
  assert.deepEqual(d?.syscalls?.map((r) => r.names[0]), ['read', 'chroot']);
});

test('Localhost: missing, relative, unreadable or malformed profiles are refused, naming the file and the field', async () => {
  const missing = join(base, 'missing.json');
  await assert.rejects(seccompFor(profile('Localhost', missing), { privileged: false }), invalid(new RegExp(`${missing} does not exist`)));
  await assert.rejects(seccompFor(profile('Localhost', 'rel.json'), { privileged: false }), invalid(/"rel.json" must be an absolute path/));
  await assert.rejects(seccompFor(profile('Localhost'), { privileged: false }), invalid(/needs localhost_ref/));
  const cases: Array<[unknown, RegExp]> = [
    ['{not json', /not valid JSON/],
    [[], /expected a JSON object/],
    [{ defaultAction: 'SCMP_ACT_MAYBE' }, /defaultAction "SCMP_ACT_MAYBE"/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'ALLOW' }] }, /syscalls\[0\]\.action "ALLOW"/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: [], action: 'SCMP_ACT_ALLOW' }] }, /syscalls\[0\] needs syscall names/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 6, value: 1, op: 'SCMP_CMP_EQ' }] }] }, /args\[0\]\.index 6/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: -1, op: 'SCMP_CMP_EQ' }] }] }, /args\[0\]\.value must be a non-negative/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', flags: ['SECCOMP_FILTER_FLAG_MAGIC'] }, /unknown flag/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', defaultErrnoRet: 'EPERM' }, /defaultErrnoRet must be/],
  ];
  for (const [i, [content, pattern]] of cases.entries()) {
    const file = join(base, `bad-${i}.json`);
    await writeFile(file, typeof content === 'string' ? content : JSON.stringify(content));
    await assert.rejects(seccompFor(profile('Localhost', file), { privileged: false }), invalid(new RegExp(`${file}:? .*${pattern.source}`)));
  }
  await assert.rejects(seccompFor(profile('Localhost', base), { privileged: false }), invalid(/not a regular file/));
});

describe('under real runc', { skip: RUNC_SKIP }, () => {
  const script =
    'busybox unshare -U busybox true; echo unshare=$?; busybox chroot / busybox true; echo chroot=$?; ' +
    'busybox linux32 busybox true; echo linux32=$?; busybox grep ^Seccomp: /proc/self/status';
  test('RuntimeDefault: runc and libseccomp accept the profile; a new user namespace is refused, chroot and a 32-bit personality work', async () => {
    const spec = baseSpec(['/bin/busybox', 'sh', '-c', script]);
    spec.linux.seccomp = await seccompFor(profile('RuntimeDefault'), { privileged: false, capabilities: spec.process?.capabilities?.bounding });
    const r = await runSpec(spec);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /unshare=1\nchroot=0\nlinux32=0\nSeccomp:\s+2/);
    assert.match(r.stderr, /Operation not permitted/);
  });
  test('Unconfined: the same container may make a user namespace', async () => {
    const r = await runSpec(baseSpec(['/bin/busybox', 'sh', '-c', script]));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /unshare=0\nchroot=0\nlinux32=0\nSeccomp:\s+0/);
  });
});
