// Pausing and resuming every process of a cgroup (the cgroup freezer), waiting until the kernel
// reports the new state, for `berth pause` and for killing a container's processes without races.
import { readFile, writeFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { BerthError, errnoCode, notFound, unavailable } from '../util/errors.ts';
import { cgroupDir } from './path.ts';
import type { CgroupOptions } from './stats.ts';
import { cgroupVersion } from './version.ts';

export interface FreezeOptions extends CgroupOptions {
  /** How long to wait for the kernel to settle (default 10 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Freezes the cgroup's processes; returns once the kernel reports it frozen. */
export async function freeze(cgroupsPath: string, opts: FreezeOptions = {}): Promise<void> {
  await setFrozen(cgroupsPath, true, opts);
}

/** Thaws the cgroup's processes; returns once the kernel reports it thawed. */
export async function thaw(cgroupsPath: string, opts: FreezeOptions = {}): Promise<void> {
  await setFrozen(cgroupsPath, false, opts);
}

async function setFrozen(cgroupsPath: string, frozen: boolean, opts: FreezeOptions): Promise<void> {
  const root = opts.root ?? '/sys/fs/cgroup';
  const version = opts.version ?? (await cgroupVersion(root));
  const what = frozen ? 'freezing' : 'thawing';
  // v1 says FREEZING while tasks are still being stopped; v2 reports "frozen 1" in cgroup.events.
  const v1State = `${cgroupDir(root, cgroupsPath, 'freezer')}/freezer.state`;
  const v2Dir = cgroupDir(root, cgroupsPath);
  const control = version === 2 ? `${v2Dir}/cgroup.freeze` : v1State;
  const value = version === 2 ? (frozen ? '1' : '0') : frozen ? 'FROZEN' : 'THAWED';
  const stateFile = version === 2 ? `${v2Dir}/cgroup.events` : v1State;
  const settled = (state: string): boolean =>
    version === 2 ? new RegExp(`^frozen ${frozen ? 1 : 0}$`, 'm').test(state) : state.trim() === value;
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  let pause = 1;
  for (;;) {
    opts.signal?.throwIfAborted();
    try {
      // v1 may need the write repeated: a task forking while the freeze runs can leave it FREEZING.
      await writeFile(control, value);
      if (settled(await readFile(stateFile, 'utf8'))) return;
    } catch (err) {
      if (err instanceof BerthError) throw err;
      if (errnoCode(err) === 'ENOENT') throw notFound(`${what} cgroup ${cgroupsPath}: it does not exist (${control})`);
      throw unavailable(`${what} cgroup ${cgroupsPath} failed: ${(err as Error).message}`, err);
    }
    if (Date.now() >= deadline) {
      throw unavailable(`${what} cgroup ${cgroupsPath} did not settle within ${opts.timeoutMs ?? 10_000} ms; a process may be stuck in the kernel (check its /proc/<pid>/stack)`);
    }
    await delay(pause, undefined, { signal: opts.signal });
    pause = Math.min(pause * 2, 50);
  }
}
