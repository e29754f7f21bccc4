// The kubelet's files as they were before berth touched them, kept under
// /var/lib/berth/installer/kubelet-backup/ so `revert` restores them byte for byte. The first
// backup wins: a rerun after a crash never overwrites originals with already-edited files.
import { chmod, mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { digestHex, sha256 } from '../util/digest.ts';
import { onHost } from './host.ts';
import type { FileEdit } from './kubelet-config.ts';

export interface BackupEntry {
  path: string;
  mode: number;
  sha256: string;
}

export interface Backup {
  oldEndpoint: string;
  /** The unit the kubelet runs in (kubelet.service, k3s.service…), stopped and started around edits. */
  unit: string;
  files: BackupEntry[];
}

const MANIFEST = 'backup.json';

function backupDir(stateDir: string): string {
  return join(stateDir, 'kubelet-backup');
}

const blobName = (sha: string): string => `${sha}.orig`;

function parseBackup(text: string, where: string): Backup {
  const doc = JSON.parse(text) as unknown;
  const bad = (): Error => new Error(`${where} is damaged (not a kubelet backup record); restore the kubelet files by hand`);
  if (typeof doc !== 'object' || doc === null) throw bad();
  const { oldEndpoint, unit, files } = doc as Record<string, unknown>;
  if (typeof oldEndpoint !== 'string' || typeof unit !== 'string' || !/^[\w@.-]+\.service$/.test(unit) || !Array.isArray(files)) throw bad();
  for (const f of files as unknown[]) {
    const e = f as Record<string, unknown>;
    if (typeof e?.path !== 'string' || !e.path.startsWith('/') || typeof e.mode !== 'number' || typeof e.sha256 !== 'string' || !/^[a-f0-9]{64}$/.test(e.sha256)) throw bad();
  }
  return { oldEndpoint, unit, files: files as BackupEntry[] };
}

export async function readBackup(stateDir: string): Promise<Backup | undefined> {
  const path = join(backupDir(stateDir), MANIFEST);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return parseBackup(text, path);
}

/** Saves the originals of files about to change that are not saved yet; the record is written last. */
export async function saveBackup(hostRoot: string, stateDir: string, edits: FileEdit[], oldEndpoint: string, unit: string): Promise<Backup> {
  const dir = backupDir(stateDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const backup = (await readBackup(stateDir)) ?? { oldEndpoint, unit, files: [] };
  const missing = edits.filter((e) => !backup.files.some((f) => f.path === e.path));
  if (missing.length === 0 && backup.files.length > 0) return backup;
  for (const e of missing) {
    const hex = digestHex(sha256(e.before));
    await writeFileAtomic(join(dir, blobName(hex)), e.before, 0o600);
    backup.files.push({ path: e.path, mode: (await stat(onHost(hostRoot, e.path))).mode & 0o7777, sha256: hex });
  }
  await writeFileAtomic(join(dir, MANIFEST), `${JSON.stringify(backup, null, 2)}\n`, 0o600);
  return backup;
}

/** Writes every saved original back (checked against its digest), then forgets the backup. */
export async function restoreBackup(hostRoot: string, stateDir: string, backup: Backup): Promise<string[]> {
  const dir = backupDir(stateDir);
  const restored: string[] = [];
  for (const f of backup.files) {
    const bytes = await readFile(join(dir, blobName(f.sha256)));
    if (digestHex(sha256(bytes)) !== f.sha256) throw new Error(`the backup of ${f.path} in ${dir} is damaged (digest mismatch); restore it by hand`);
    await writeFileAtomic(onHost(hostRoot, f.path), bytes, f.mode);
    await chmod(onHost(hostRoot, f.path), f.mode); // the umask may have narrowed it
    restored.push(f.path);
  }
  // The record goes first: a crash after it leaves stray blobs, never a record without its files.
  await rm(join(dir, MANIFEST), { force: true });
  await rm(dir, { recursive: true, force: true });
  return restored;
}
