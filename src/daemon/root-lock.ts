// One daemon per state root: two berthds writing the same metadata would corrupt it. Node has no
// flock(), so the lock is a pid file created atomically with link(); a file left by a killed daemon
// is recognised as stale because its pid no longer runs berthd.
import { link, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempSibling } from '../util/atomic-file.ts';

export class RootLockedError extends Error {}

async function pidRunsBerthd(pid: number): Promise<boolean> {
  if (pid === process.pid) return true;
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('berthd') || cmdline.includes('main.ts');
  } catch {
    return false;
  }
}

export interface RootLock {
  path: string;
  release(): Promise<void>;
}

export async function lockRoot(root: string): Promise<RootLock> {
  const path = join(root, 'berthd.pid');
  const tmp = tempSibling(path);
  await writeFile(tmp, `${process.pid}\n`);
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await link(tmp, path);
        return { path, release: () => rm(path, { force: true }) };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
      if (Number.isInteger(holder) && (await pidRunsBerthd(holder))) {
        throw new RootLockedError(
          `another berthd (pid ${holder}) is already using root ${root}; stop it or start this one with a different --root`,
        );
      }
      // Stale: the previous daemon died without releasing. Remove and retry the atomic link.
      await rm(path, { force: true });
    }
    throw new RootLockedError(`could not take the lock ${path}: it keeps reappearing`);
  } finally {
    await rm(tmp, { force: true });
  }
}
