// The versions under /opt/berth: each `<version>/` (bin/node, lib/ with the bundles) appears whole
// by rename, `current` is a symlink flipped by rename, and `.previous` names the version to go
// back to while a new one is not yet healthy. Old versions are pruned only after that.
import { cp, lstat, mkdir, readdir, readFile, readlink, rename, rm, stat, symlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { syncDir, writeFileAtomic } from '../util/atomic-file.ts';
import { invalidArgument } from '../util/errors.ts';

const CURRENT = 'current';
const PREVIOUS = '.previous';

export function checkVersion(version: string): string {
  if (!/^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$/.test(version) || version === CURRENT) {
    throw invalidArgument(`--version ${JSON.stringify(version)} is not a version name (letters, digits, . _ + -; not "current")`);
  }
  return version;
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );
}

/** Copies `source`'s bin/node and lib/ to `opt/<version>/`, unless that version is already there. */
export async function installRelease(opt: string, version: string, source: string): Promise<'copied' | 'present'> {
  await mkdir(opt, { recursive: true, mode: 0o755 });
  // Leftovers of a copy or removal cut short: never a version, since versions appear only by rename.
  for (const name of await readdir(opt)) {
    if (name.startsWith('.tmp-') || name.startsWith('.grave-')) await rm(join(opt, name), { recursive: true, force: true });
  }
  const dir = join(opt, version);
  if (await exists(dir)) return 'present';
  const tmp = join(opt, `.tmp-${version}-${randomBytes(4).toString('hex')}`);
  try {
    await mkdir(join(tmp, 'bin'), { recursive: true });
    await cp(join(source, 'bin', 'node'), join(tmp, 'bin', 'node'), { preserveTimestamps: true });
    await cp(join(source, 'lib'), join(tmp, 'lib'), { recursive: true, preserveTimestamps: true });
    await rename(tmp, dir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  await syncDir(opt);
  return 'copied';
}

/** The version `current` points at, if any. */
export async function currentVersion(opt: string): Promise<string | undefined> {
  try {
    return await readlink(join(opt, CURRENT));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Points `current` at `version` in one rename, so berthd's unit never sees it missing. */
export async function flipCurrent(opt: string, version: string): Promise<void> {
  const tmp = join(opt, `.tmp-link-${randomBytes(4).toString('hex')}`);
  await symlink(version, tmp);
  try {
    await rename(tmp, join(opt, CURRENT));
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await syncDir(opt);
}

/** The version to roll back to while an upgrade is unproven; written before `current` moves. */
export async function readPrevious(opt: string): Promise<string | undefined> {
  try {
    const v = (await readFile(join(opt, PREVIOUS), 'utf8')).trim();
    return v === '' ? undefined : checkVersion(v);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export async function writePrevious(opt: string, version: string | undefined): Promise<void> {
  if (version === undefined) await rm(join(opt, PREVIOUS), { force: true });
  else await writeFileAtomic(join(opt, PREVIOUS), `${version}\n`);
}

/** Removes all but the `keep` newest version dirs, never one in `protect` (current, the rollback target). */
export async function pruneVersions(opt: string, keep: number, protect: ReadonlySet<string>): Promise<string[]> {
  const versions: Array<{ name: string; mtime: number }> = [];
  for (const entry of await readdir(opt, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
    versions.push({ name: entry.name, mtime: (await stat(join(opt, entry.name))).mtimeMs });
  }
  versions.sort((a, b) => b.mtime - a.mtime || b.name.localeCompare(a.name));
  let kept = versions.filter((v) => protect.has(v.name)).length;
  const removed: string[] = [];
  for (const v of versions) {
    if (protect.has(v.name)) continue;
    if (kept < keep) {
      kept++;
      continue;
    }
    // Rename first: a removal cut short leaves a .grave-, never a half version that looks whole.
    const grave = join(opt, `.grave-${v.name}-${randomBytes(4).toString('hex')}`);
    await rename(join(opt, v.name), grave);
    await rm(grave, { recursive: true, force: true });
    removed.push(v.name);
  }
  return removed;
}
