// AppArmor profile choice: on this host (which may lack AppArmor) and on a described host with
// AppArmor and a set of loaded profiles.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { apparmorFor, DEFAULT_APPARMOR_PROFILE, type AppArmorHost } from '../../src/oci/apparmor.ts';
import { BerthError } from '../../src/util/errors.ts';
import type { SecurityProfile__Output } from '../../src/cri/gen/runtime/v1/SecurityProfile.ts';

const profile = (profile_type: SecurityProfile__Output['profile_type'], localhost_ref = ''): SecurityProfile__Output => ({
  profile_type,
  localhost_ref,
});
const kind = (k: string, pattern: RegExp) => (err: unknown) => err instanceof BerthError && err.kind === k && pattern.test(err.message);

let base: string;
let host: AppArmorHost;
let noDefault: AppArmorHost;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'berth-apparmor-'));
  host = { enabledFile: join(base, 'enabled'), profilesFile: join(base, 'profiles') };
  noDefault = { enabledFile: host.enabledFile, profilesFile: join(base, 'profiles-without-default') };
  await writeFile(host.enabledFile as string, 'Y\n');
  await writeFile(host.profilesFile as string, `${DEFAULT_APPARMOR_PROFILE} (enforce)\nmy-app (complain)\n/usr/bin/thing (enforce)\n`);
  await writeFile(noDefault.profilesFile as string, 'my-app (enforce)\n');
});
after(async () => {
  if (base) await rm(base, { recursive: true, force: true });
});

const hostHasAppArmor =
  existsSync('/sys/module/apparmor/parameters/enabled') && readFileSync('/sys/module/apparmor/parameters/enabled', 'utf8').trim() === 'Y';

test('on a host without AppArmor: no profile, and a Localhost one is refused as unsatisfiable', { skip: hostHasAppArmor && 'this host has AppArmor' }, async () => {
  assert.equal(await apparmorFor(profile('RuntimeDefault'), { privileged: false }), undefined);
  assert.equal(await apparmorFor(null, { privileged: false }), undefined);
  await assert.rejects(apparmorFor(profile('Localhost', 'my-app'), { privileged: false }), kind('failed-precondition', /"my-app".*no AppArmor/));
});

test('with AppArmor: RuntimeDefault uses the loaded berth default, Localhost a loaded profile by name', async () => {
  assert.equal(await apparmorFor(profile('RuntimeDefault'), { privileged: false, host }), DEFAULT_APPARMOR_PROFILE);
  assert.equal(await apparmorFor(null, { privileged: false, host }), DEFAULT_APPARMOR_PROFILE);
  assert.equal(await apparmorFor(profile('RuntimeDefault'), { privileged: true, host }), undefined);
  assert.equal(await apparmorFor(profile('Unconfined'), { privileged: false, host }), undefined);
  assert.equal(await apparmorFor(profile('Localhost', 'localhost/my-app'), { privileged: false, host }), 'my-app');
  assert.equal(await apparmorFor(profile('Localhost', '/usr/bin/thing'), { privileged: true, host }), '/usr/bin/thing');
  assert.equal(await apparmorFor(profile('RuntimeDefault'), { privileged: false, host: noDefault }), undefined, 'no default loaded');
  await assert.rejects(apparmorFor(profile('Localhost', 'ghost'), { privileged: false, host }), kind('invalid-argument', /"ghost" is not loaded/));
  await assert.rejects(apparmorFor(profile('Localhost', ''), { privileged: false, host }), kind('invalid-argument', /needs localhost_ref/));
});

test('the deprecated apparmor_profile string, read when the SecurityProfile is absent', async () => {
  assert.equal(await apparmorFor(null, { privileged: false, host, legacyProfile: 'localhost/my-app' }), 'my-app');
  assert.equal(await apparmorFor(null, { privileged: false, host, legacyProfile: 'unconfined' }), undefined);
  assert.equal(await apparmorFor(null, { privileged: false, host, legacyProfile: 'runtime/default' }), DEFAULT_APPARMOR_PROFILE);
  assert.equal(await apparmorFor(profile('Unconfined'), { privileged: false, host, legacyProfile: 'localhost/my-app' }), undefined);
  await assert.rejects(apparmorFor(null, { privileged: false, host, legacyProfile: 'my-app' }), kind('invalid-argument', /apparmor_profile "my-app" is not/));
});
