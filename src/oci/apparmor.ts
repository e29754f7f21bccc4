// The AppArmor profile a container's process runs under, where the host has AppArmor at all.
import { readFile } from 'node:fs/promises';
import type { SecurityProfile__Output } from '../cri/gen/runtime/v1/SecurityProfile.ts';
import { failedPrecondition, invalidArgument } from '../util/errors.ts';

/**
 * The profile berth uses for RuntimeDefault. berth does not write or load one itself: where an
 * administrator has loaded a profile of this name it is used; otherwise RuntimeDefault runs
 * unconfined by AppArmor (seccomp, capabilities and masked paths still apply).
 */
export const DEFAULT_APPARMOR_PROFILE = 'berth-default';

export interface AppArmorHost {
  /** /sys/module/apparmor/parameters/enabled */
  enabledFile?: string;
  /** securityfs list of loaded profiles, "name (mode)" per line */
  profilesFile?: string;
}

/**
 * The profile name for the OCI spec's process.apparmorProfile, or undefined to leave it unset. No
 * profile means RuntimeDefault, as the CRI defines it; the deprecated apparmor_profile string is read
 * when the SecurityProfile is absent. Without AppArmor on the host: undefined, except that a
 * Localhost profile cannot be honoured and is refused. Privileged containers get no RuntimeDefault
 * profile (a Localhost one still applies).
 */
export async function apparmorFor(
  given: SecurityProfile__Output | null | undefined,
  opts: { privileged: boolean; host?: AppArmorHost; legacyProfile?: string },
): Promise<string | undefined> {
  const profile = given ?? legacyAppArmorProfile(opts.legacyProfile ?? '');
  const type = profile?.profile_type ?? 'RuntimeDefault';
  const enabled = await hostHasAppArmor(opts.host?.enabledFile);
  if (type === 'Unconfined') return undefined;
  if (type === 'Localhost') {
    const name = (profile?.localhost_ref ?? '').replace(/^localhost\//, '');
    if (!name) throw invalidArgument('AppArmor profile Localhost needs localhost_ref, the name of a loaded profile');
    if (!enabled) throw failedPrecondition(`AppArmor profile ${JSON.stringify(name)} was asked for, but this node has no AppArmor`);
    if (!(await loadedProfiles(opts.host?.profilesFile)).has(name)) {
      throw invalidArgument(`AppArmor profile ${JSON.stringify(name)} is not loaded on this node (load it with apparmor_parser)`);
    }
    return name;
  }
  if (!enabled || opts.privileged) return undefined;
  return (await loadedProfiles(opts.host?.profilesFile)).has(DEFAULT_APPARMOR_PROFILE) ? DEFAULT_APPARMOR_PROFILE : undefined;
}

/** The deprecated apparmor_profile as a SecurityProfile; "" is no profile. */
function legacyAppArmorProfile(name: string): SecurityProfile__Output | null {
  if (name === '') return null;
  if (name === 'runtime/default') return { profile_type: 'RuntimeDefault', localhost_ref: '' };
  if (name === 'unconfined') return { profile_type: 'Unconfined', localhost_ref: '' };
  if (name.startsWith('localhost/')) return { profile_type: 'Localhost', localhost_ref: name.slice('localhost/'.length) };
  throw invalidArgument(`apparmor_profile ${JSON.stringify(name)} is not runtime/default, unconfined or localhost/<profile name>`);
}

async function hostHasAppArmor(file = '/sys/module/apparmor/parameters/enabled'): Promise<boolean> {
  try {
    return (await readFile(file, 'utf8')).trim() === 'Y';
  } catch {
    return false;
  }
}

async function loadedProfiles(file = '/sys/kernel/security/apparmor/profiles'): Promise<Set<string>> {
  try {
    const text = await readFile(file, 'utf8');
    return new Set(
      text
        .split('\n')
        .map((l) => l.replace(/ \([a-z]+\)$/, '').trim())
        .filter(Boolean),
    );
  } catch {
    return new Set();
  }
}
