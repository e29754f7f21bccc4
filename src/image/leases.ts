// Leases: what a running thing (a container's rootfs, a build step) holds of an image, so GC and
// RemoveImage never pull a layer out from under it. One JSON file per holder, written crash-safely
// before the holder uses the layers, and removed when it is done:
//   leases/<sha256(holder)>.json   { holder, imageId, chainIds, blobs }
// The image's names may go away meanwhile (RemoveImage succeeds, as with containerd); its layers
// and config blob stay until the last lease on them is released.
import { hashedFileName, RecordDir } from '../store/record-dir.ts';
import { isDigest } from '../util/digest.ts';

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
  readonly #leases: RecordDir<Lease>;

  constructor(dir: string) {
    this.#leases = new RecordDir(dir, isLease, { key: (l) => l.holder, fileName: hashedFileName });
  }

  /** Loads every lease; returns the paths of damaged ones, which were moved aside. */
  load(): Promise<string[]> {
    return this.#leases.load();
  }

  /**
   * Records the lease in memory at once (so a GC that starts now sees it), then on disk. A holder
   * that already has a lease gets it replaced.
   */
  put(lease: Lease): Promise<void> {
    return this.#leases.put(lease);
  }

  get(holder: string): Lease | undefined {
    return this.#leases.get(holder);
  }

  async release(holder: string): Promise<boolean> {
    if (!this.#leases.get(holder)) return false;
    await this.#leases.remove(holder);
    return true;
  }

  all(): Lease[] {
    return this.#leases.all();
  }
}
