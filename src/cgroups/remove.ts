// Removing a container's cgroup from every hierarchy once its processes are gone (runc removes it
// on delete; this cleans up after a crash or a runtime that did not).
import { readdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { errnoCode, unavailable, unlessMissing } from '../util/errors.ts';
import { cgroupRelativePath } from './path.ts';
import type { FreezeOptions } from './freezer.ts';
import { cgroupVersion } from './version.ts';

/**
 * rmdir the cgroup (children first) in every v1 controller tree, or in the v2 tree. A cgroup already
 * gone is fine. The kernel refuses (EBUSY) while a process, even a dying one, is still inside: that
 * is retried until the deadline, then reported.
 */
export async function removeCgroup(cgroupsPath: string, opts: FreezeOptions = {}): Promise<void> {
  const root = opts.root ?? '/sys/fs/cgroup';
  const version = opts.version ?? (await cgroupVersion(root));
  const rel = cgroupRelativePath(cgroupsPath);
  if (rel === '') return; // never the root cgroup
  const hierarchies = version === 2 ? [root] : await v1Hierarchies(root);
  const deadline = Date.now() + (opts.timeoutMs ?? 5000);
  for (const h of hierarchies) await removeTree(join(h, rel), deadline, cgroupsPath, opts.signal);
}

/** The v1 controller mounts under root; symlinks (cpu → cpu,cpuacct) name a tree already listed. */
async function v1Hierarchies(root: string): Promise<string[]> {
  const entries = await readdir(root, { withFileTypes: true });
  return entries.filter((e) => e.isDirectory()).map((e) => join(root, e.name));
}

async function removeTree(dir: string, deadline: number, cgroupsPath: string, signal?: AbortSignal): Promise<void> {
  const children = await unlessMissing(readdir(dir, { withFileTypes: true }));
  if (!children) return;
  for (const c of children) if (c.isDirectory()) await removeTree(join(dir, c.name), deadline, cgroupsPath, signal);
  let pause = 1;
  for (;;) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || Date.now() >= deadline) {
        throw unavailable(`removing cgroup ${cgroupsPath} (${dir}) failed: ${(err as Error).message}; processes may still be in it (see ${dir}/cgroup.procs)`, err);
      }
    }
    await delay(pause, undefined, { signal });
    pause = Math.min(pause * 2, 50);
  }
}
