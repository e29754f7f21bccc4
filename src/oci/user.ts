// The uid, gid, groups and home of a container's process: the image's USER or the CRI's run_as_*
// overrides, resolved against the image's own /etc/passwd and /etc/group (never the host's).
import { invalidArgument } from '../util/errors.ts';
import { readFileInRoot } from '../util/in-root.ts';

export interface UserRequest {
  /** The image config's USER: "", "name", "uid", "name:group", "uid:gid" (and mixes). */
  imageUser: string;
  runAsUser?: number;
  runAsUsername?: string;
  runAsGroup?: number;
  supplementalGroups: readonly number[];
}

export interface ResolvedUser {
  uid: number;
  gid: number;
  /** The primary gid first, then the groups /etc/group gives the user, then the supplemental ones. */
  additionalGids: number[];
  home: string;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/** Largest id the kernel accepts: (uid_t)-1 means "unchanged" and is never a real id. */
const MAX_ID = 0xfffffffe;

/**
 * Resolves who the container runs as. run_as_username, else run_as_user, replaces the image's user
 * (and its group part, as containerd does); run_as_group sets the group but needs a user with it,
 * as the CRI validation suite expects. A name the image's passwd lacks is refused; a numeric uid
 * it lacks is fine and runs with gid 0 and home "/", as runc does.
 */
export async function resolveUser(rootfs: string, req: UserRequest): Promise<ResolvedUser> {
  if (req.runAsGroup !== undefined && req.runAsUser === undefined && !req.runAsUsername) {
    throw invalidArgument(`run_as_group ${req.runAsGroup} is set without run_as_user or run_as_username; set a user as well`);
  }
  let userPart: string;
  let groupPart: string | undefined;
  if (req.runAsUsername) {
    userPart = req.runAsUsername;
  } else if (req.runAsUser !== undefined) {
    userPart = String(checkId(req.runAsUser, 'run_as_user'));
  } else {
    const [u, g, ...rest] = req.imageUser.split(':');
    if (rest.length > 0) throw invalidArgument(`image USER ${JSON.stringify(req.imageUser)} has more than one ":"`);
    userPart = u || '0';
    groupPart = g === '' ? undefined : g;
  }
  if (req.runAsGroup !== undefined) groupPart = String(checkId(req.runAsGroup, 'run_as_group'));

  const passwd = parsePasswd((await readFileInRoot(rootfs, '/etc/passwd')) ?? '');
  let entry: PasswdEntry | undefined;
  let uid: number;
  if (isNumeric(userPart)) {
    uid = checkId(Number(userPart), 'user');
    entry = passwd.find((p) => p.uid === uid);
  } else {
    entry = passwd.find((p) => p.name === userPart);
    if (!entry) {
      throw invalidArgument(`user ${JSON.stringify(userPart)} is not in the image's /etc/passwd; use a numeric uid or add the user to the image`);
    }
    uid = entry.uid;
  }

  let groups: GroupEntry[] | undefined;
  const loadGroups = async (): Promise<GroupEntry[]> =>
    (groups ??= parseGroup((await readFileInRoot(rootfs, '/etc/group')) ?? ''));
  let gid = entry?.gid ?? 0;
  if (groupPart !== undefined) {
    if (isNumeric(groupPart)) {
      gid = checkId(Number(groupPart), 'group');
    } else {
      const g = (await loadGroups()).find((e) => e.name === groupPart);
      if (!g) {
        throw invalidArgument(`group ${JSON.stringify(groupPart)} is not in the image's /etc/group; use a numeric gid or add the group to the image`);
      }
      gid = g.gid;
    }
  }

  const memberOf = entry ? (await loadGroups()).filter((g) => g.members.includes(entry.name)).map((g) => g.gid) : [];
  const supplemental = req.supplementalGroups.map((g) => checkId(g, 'supplemental_groups'));
  return {
    uid,
    gid,
    additionalGids: [...new Set([gid, ...memberOf, ...supplemental])],
    home: entry?.home || '/',
  };
}

function isNumeric(s: string): boolean {
  return /^[0-9]+$/.test(s);
}

function checkId(n: number, field: string): number {
  if (!Number.isInteger(n) || n < 0 || n > MAX_ID) throw invalidArgument(`${field} ${n} is not a valid id (0 to ${MAX_ID})`);
  return n;
}

/** passwd(5) lines: name:password:uid:gid:gecos:home:shell. Malformed lines are skipped, as libc does. */
function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 4 || !f[0] || line.startsWith('#') || !isNumeric(f[2] ?? '') || !isNumeric(f[3] ?? '')) continue;
    out.push({ name: f[0], uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? '' });
  }
  return out;
}

/** group(5) lines: name:password:gid:member,member. */
function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 3 || !f[0] || line.startsWith('#') || !isNumeric(f[2] ?? '')) continue;
    out.push({ name: f[0], gid: Number(f[2]), members: (f[3] ?? '').split(',').map((m) => m.trim()).filter(Boolean) });
  }
  return out;
}
