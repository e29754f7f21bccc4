// Leases: what a running thing (a container's rootfs, a build step) holds of an image, so GC and
// RemoveImage never pull a layer out from under it. One JSON file per holder, written crash-safely
// before the holder uses the layers, and removed when it is done:
//   leases/<sha256(holder)>.json   { holder, imageId, chainIds, blobs }
// The image's names may go away meanwhile (RemoveImage succeeds, as with containerd); its layers
// and config blob stay until the last lease on them is released.
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { syncDir, writeFileAtomic } from '../util/atomic-file.ts';
import { digestHex, isDigest, sha256 } from '../util/digest.ts';

export interface Lease {
  /** Who holds it, e.g. `container/<id>`; one lease per holder. */
  holder: string;
  imageId: string;
  /** Snapshots held, base layer first. */
  chainIds: string[];
  /** Blobs held (the config, so the holder can still read it). */
  blobs: string[];
}

function isLease(v: unknown): v is Lease {
  const o = v as Partial<Lease> | null;
  const digests = (a: unknown): boolean => Array.isArray(a) && a.every((d) => typeof d === 'string' && isDigest(d));
  return (
    typeof o === 'object' && o !== null &&
    typeof o.holder === 'string' && o.holder.length > 0 &&
    typeof o.imageId === 'string' && isDigest(o.imageId) &&
    digests(o.chainIds) && digests(o.blobs)
  );
}

export class LeaseStore {
  readonly #dir: string;
  readonly #leases = new Map<string, Lease>();

  constructor(dir: string) {
    this.#dir = dir;
  }

  /** Loads every lease; returns the paths of damaged ones, which were moved aside. */
  async load(): Promise<string[]> {
    await mkdir(this.#dir, { recursive: true });
    const bad: string[] = [];
    for (const file of await readdir(this.#dir)) {
      const path = join(this.#dir, file);
      if (file.startsWith('.')) {
        await rm(path, { force: true });
        continue;
      }
      if (!file.endsWith('.json')) continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(await readFile(path, 'utf8'));
      } catch {
        parsed = undefined;
      }
      if (isLease(parsed)) {
        this.#leases.set(parsed.holder, parsed);
      } else {
        await rename(path, `${path}.corrupt`);
        bad.push(`${path}.corrupt`);
      }
    }
    return bad;
  }

  /**
   * Records the lease in memory at once (so a GC that starts now sees it), then on disk. A holder
   * that already has a lease gets it replaced.
   */
  async put(lease: Lease): Promise<void> {
    this.#leases.set(lease.holder, lease);
    await writeFileAtomic(this.#file(lease.holder), JSON.stringify(lease));
  }

  get(holder: string): Lease | undefined {
    return this.#leases.get(holder);
  }

  async release(holder: string): Promise<boolean> {
    if (!this.#leases.has(holder)) return false;
    await rm(this.#file(holder), { force: true });
    await syncDir(this.#dir);
    this.#leases.delete(holder);
    return true;
  }

  all(): Lease[] {
    return [...this.#leases.values()];
  }

  #file(holder: string): string {
    return join(this.#dir, `${digestHex(sha256(holder))}.json`);
  }
}
