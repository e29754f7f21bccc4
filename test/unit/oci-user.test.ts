// Who a container runs as: image USER forms, CRI overrides, groups from the image's /etc/group, and
// an image's /etc/passwd or /etc/group that tries to point at host files, loop, or hang the reader.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { resolveUser, type UserRequest } from '../../src/oci/user.ts';
import { resolveInRoot } from '../../src/util/in-root.ts';
import { BerthError } from '../../src/util/errors.ts';
import { baseSpec, RUNC_SKIP, runSpec } from '../helpers/runc.ts';

const invalid = (pattern: RegExp) => (err: unknown) =>
  err instanceof BerthError && err.kind === 'invalid-argument' && pattern.test(err.message);

const PASSWD = [
  'root:x:0:0:root:/root:/bin/sh',
  'app:x:1000:1000:App:/home/app:/bin/sh',
  'web:x:33:33::/var/www:/bin/false',
  '# a comment:x:5:5',
  'broken line',
  'app:x:2000:2000:a later duplicate is ignored:/nope:/bin/sh',
].join('\n');
const GROUP = ['root:x:0:', 'app:x:1000:', 'wheel:x:10:app,web', 'audio:x:29: app ', 'staff:x:50:web', 'tty:x:5:'].join('\n');

let base: string;
let rootfs: string;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'berth-user-'));
  rootfs = join(base, 'rootfs');
  await mkdir(join(rootfs, 'etc'), { recursive: true });
  await writeFile(join(rootfs, 'etc/passwd'), PASSWD);
  await writeFile(join(rootfs, 'etc/group'), GROUP);
  // Host files a hostile image would like berth to read instead of its own.
  await mkdir(join(base, 'outside'));
  await writeFile(join(base, 'outside/passwd'), 'hostonly:x:4444:4444::/h:/bin/sh\n');
  await writeFile(join(base, 'outside/group'), 'hostgroup:x:4444:app\n');
});
after(async () => {
  if (base) await rm(base, { recursive: true, force: true });
});

const req = (over: Partial<UserRequest>): UserRequest => ({ imageUser: '', supplementalGroups: [], ...over });

test('image USER forms: empty, name, uid, name:group, uid:gid, unknown numeric uid', async () => {
  assert.deepEqual(await resolveUser(rootfs, req({})), { uid: 0, gid: 0, additionalGids: [0], home: '/root' });
  assert.deepEqual(await resolveUser(rootfs, req({ imageUser: 'app' })), {
    uid: 1000,
    gid: 1000,
    additionalGids: [1000, 10, 29],
    home: '/home/app',
  });
  assert.deepEqual(await resolveUser(rootfs, req({ imageUser: '33' })), { uid: 33, gid: 33, additionalGids: [33, 10, 50], home: '/var/www' });
  assert.equal((await resolveUser(rootfs, req({ imageUser: 'app:staff' }))).gid, 50);
  assert.equal((await resolveUser(rootfs, req({ imageUser: 'app:' }))).gid, 1000);
  const numeric = await resolveUser(rootfs, req({ imageUser: '1000:7' }));
  assert.deepEqual([numeric.uid, numeric.gid], [1000, 7]);
  assert.deepEqual(await resolveUser(rootfs, req({ imageUser: '4242' })), { uid: 4242, gid: 0, additionalGids: [0], home: '/' });
});

test('CRI overrides: run_as_user drops the image user and its group; run_as_username with run_as_group; supplemental groups de-duplicated', async () => {
  const byUid = await resolveUser(rootfs, req({ imageUser: 'app:staff', runAsUser: 33 }));
  assert.deepEqual([byUid.uid, byUid.gid, byUid.home], [33, 33, '/var/www']);
  const byName = await resolveUser(rootfs, req({ imageUser: '33', runAsUsername: 'app', runAsGroup: 5, supplementalGroups: [7, 10, 5, 7] }));
  assert.deepEqual(byName, { uid: 1000, gid: 5, additionalGids: [5, 10, 29, 7], home: '/home/app' });
  const rootAsGroup = await resolveUser(rootfs, req({ imageUser: 'app', runAsUser: 0, runAsGroup: 0 }));
  assert.deepEqual([rootAsGroup.uid, rootAsGroup.gid], [0, 0]);
});

test('bad users are refused, naming what was wrong', async () => {
  await assert.rejects(resolveUser(rootfs, req({ imageUser: 'ghost' })), invalid(/user "ghost" is not in the image's \/etc\/passwd/));
  await assert.rejects(resolveUser(rootfs, req({ runAsUsername: 'nobody2' })), invalid(/"nobody2"/));
  await assert.rejects(resolveUser(rootfs, req({ imageUser: 'app:ghosts' })), invalid(/group "ghosts" is not in the image's \/etc\/group/));
  await assert.rejects(resolveUser(rootfs, req({ imageUser: 'app', runAsGroup: 5 })), invalid(/run_as_group 5 is set without run_as_user/));
  await assert.rejects(resolveUser(rootfs, req({ runAsUser: -1 })), invalid(/run_as_user -1 is not a valid id/));
  await assert.rejects(resolveUser(rootfs, req({ supplementalGroups: [2 ** 32] })), invalid(/supplemental_groups/));
  await assert.rejects(resolveUser(rootfs, req({ imageUser: 'a:b:c' })), invalid(/more than one ":"/));
});

test('an image without /etc/passwd runs numeric users only', async () => {
  const bare = join(base, 'bare');
  await mkdir(bare);
  assert.deepEqual(await resolveUser(bare, req({ imageUser: '65534:65534' })), { uid: 65534, gid: 65534, additionalGids: [65534], home: '/' });
  await assert.rejects(resolveUser(bare, req({ imageUser: 'root' })), invalid(/"root"/));
});

test('hostile symlinks: /etc/passwd and /etc/group pointing out of the rootfs resolve inside it', async () => {
  const evil = join(base, 'evil');
  await mkdir(join(evil, 'etc'), { recursive: true });
  // Followed on the host, this relative link reaches base/outside/passwd.
  await symlink('../../outside/passwd', join(evil, 'etc/passwd'));
  // An absolute host path: inside the rootfs it names evil/<base>/outside/group, planted here.
  await symlink(join(base, 'outside/group'), join(evil, 'etc/group'));
  await mkdir(join(evil, base, 'outside'), { recursive: true });
  await writeFile(join(evil, base, 'outside/group'), 'inside:x:77:\n');

  await assert.rejects(resolveUser(evil, req({ imageUser: 'hostonly' })), invalid(/"hostonly" is not in the image's/));
  await assert.rejects(resolveUser(evil, req({ imageUser: '0:hostgroup' })), invalid(/"hostgroup"/));
  assert.equal((await resolveUser(evil, req({ imageUser: '0:inside' }))).gid, 77);

  assert.equal(await resolveInRoot(evil, '/etc/passwd'), join(evil, 'outside/passwd'));
  assert.equal(await resolveInRoot(evil, '../../../etc/group'), join(evil, base, 'outside/group'));
  assert.equal(await resolveInRoot(evil, 'etc/passwd/../x'), join(evil, 'outside/x'), '".." applies to where the link led');
});

test('a directory symlink inside the rootfs is followed within it', async () => {
  const moved = join(base, 'moved');
  await mkdir(join(moved, 'real-etc'), { recursive: true });
  await writeFile(join(moved, 'real-etc/passwd'), 'mover:x:321:321::/m:/bin/sh\n');
  await symlink('/../../real-etc', join(moved, 'etc'));
  assert.equal((await resolveUser(moved, req({ imageUser: 'mover' }))).uid, 321);
});

test('a symlink loop or a FIFO as /etc/passwd is an error, not a hang', async () => {
  const loop = join(base, 'loop');
  await mkdir(join(loop, 'etc'), { recursive: true });
  await symlink('/etc/passwd', join(loop, 'etc/passwd'));
  await assert.rejects(resolveUser(loop, req({ imageUser: 'app' })), invalid(/too many symlinks resolving "\/etc\/passwd"/));

  const fifo = join(base, 'fifo');
  await mkdir(join(fifo, 'etc'), { recursive: true });
  await promisify(execFile)('mkfifo', [join(fifo, 'etc/passwd')]);
  await assert.rejects(resolveUser(fifo, req({ imageUser: 'app' })), invalid(/\/etc\/passwd in the container's rootfs is not a regular file/));
});

describe('under real runc', { skip: RUNC_SKIP }, () => {
  test('the resolved user is who the process runs as, with exactly those groups', async () => {
    const user = await resolveUser(rootfs, req({ runAsUsername: 'app', runAsGroup: 5, supplementalGroups: [7] }));
    const spec = baseSpec(['/bin/busybox', 'id']);
    spec.process = { ...(spec.process as NonNullable<typeof spec.process>), user: { uid: user.uid, gid: user.gid, additionalGids: user.additionalGids } };
    const r = await runSpec(spec, { 'etc/passwd': PASSWD, 'etc/group': GROUP });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'uid=1000(app) gid=5(tty) groups=5(tty),7,10(wheel),29(audio)');
  });
});
