// Garbage collection: mark everything reachable from a named image or held by a lease, sweep the
// rest. The full collection runs at start (to finish what a crash interrupted); after a removal or
// a released lease only what that image or lease held is a candidate, so RemoveImage costs the
// removed image's files, not a walk of every blob and snapshot in the store.
import type { ContentStore } from '../content/store.ts';
import type { SnapshotStore } from '../snapshot/store.ts';
import type { ImageRecord, ImageRecords } from './records.ts';
import type { Lease } from './leases.ts';

export interface GcResult {
  images: number;
  blobs: number;
  snapshots: number;
}

/** Blobs (by digest) and snapshots (by chain ID) that may have lost their last holder. */
export interface SweepCandidates {
  blobs: Set<string>;
  snapshots: Set<string>;
}

export function noCandidates(): SweepCandidates {
  return { blobs: new Set(), snapshots: new Set() };
}

/** Adds what an image record reaches to `into`. */
export function addImage(into: SweepCandidates, rec: ImageRecord): void {
  into.blobs.add(rec.manifestDigest).add(rec.configDigest);
  if (rec.indexDigest) into.blobs.add(rec.indexDigest);
  for (const layer of rec.layers) {
    into.blobs.add(layer.digest);
    into.snapshots.add(layer.chainId);
  }
}

/** Adds what a lease holds to `into`. */
export function addLease(into: SweepCandidates, lease: Lease): void {
  for (const blob of lease.blobs) into.blobs.add(blob);
  for (const chainId of lease.chainIds) into.snapshots.add(chainId);
}

/** Full collection: names of missing images, unnamed records, and every blob and snapshot nothing reaches. */
export async function collectGarbage(
  records: ImageRecords,
  leases: readonly Lease[],
  content: ContentStore,
  snapshots: SnapshotStore,
): Promise<GcResult> {
  let images = 0;
  const named = new Set([...records.names.values()].map((n) => n.id));
  for (const name of [...records.names.values()]) {
    if (!records.images.has(name.id)) await records.removeName(name.name);
  }
  for (const id of [...records.images.keys()]) {
    if (!named.has(id)) {
      await records.removeImage(id);
      images++;
    }
  }
  const everything: SweepCandidates = {
    blobs: new Set((await content.list()).map((b) => b.digest)),
    snapshots: new Set((await snapshots.list()).map((s) => s.chainId)),
  };
  return { images, ...(await sweep(records, leases, content, snapshots, everything)) };
}

/**
 * Deletes the candidates no image record and no lease reaches. Marking is in memory (records and
 * leases are loaded), so its cost follows the number of images, not the size of the store.
 */
export async function sweep(
  records: ImageRecords,
  leases: readonly Lease[],
  content: ContentStore,
  snapshots: SnapshotStore,
  candidates: SweepCandidates,
): Promise<{ blobs: number; snapshots: number }> {
  const live = noCandidates();
  for (const rec of records.images.values()) addImage(live, rec);
  for (const lease of leases) addLease(live, lease);
  let blobs = 0;
  let snaps = 0;
  for (const digest of candidates.blobs) {
    if (!live.blobs.has(digest) && (await content.delete(digest))) blobs++;
  }
  for (const chainId of candidates.snapshots) {
    if (!live.snapshots.has(chainId) && (await snapshots.remove(chainId))) snaps++;
  }
  return { blobs, snapshots: snaps };
}
