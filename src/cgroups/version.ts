// Which cgroup hierarchy the host runs: berth reads stats through v1's per-controller
// trees or v2's single unified one.
import { access } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * 2 when `root` is itself a cgroup v2 mount (it then has cgroup.controllers), else 1. A "hybrid"
 * host, with v1 controllers under root and an almost empty v2 tree at root/unified, counts as v1:
 * its controllers are all v1.
 */
export async function cgroupVersion(root = '/sys/fs/cgroup'): Promise<1 | 2> {
  try {
    await access(join(root, 'cgroup.controllers'));
    return 2;
  } catch {
    return 1;
  }
}
