// Garbage collection: mark everything reachable from a named image or held by a lease, sweep the
// rest. Runs at start (to finish what a crash interrupted) and after every image removal.
import type { ContentStore } from '../content/store.ts';
import type { SnapshotStore } from '../snapshot/store.ts';
import type { ImageRecords } from './records.ts';
import type { Lease } from './leases.ts';

export interface GcResult {
  images: number;
  blobs: number;
  snapshots: number;
}

export async function collectGarbage(
  records: ImageRecords,
  leases: readonly Lease[],
  content: ContentStore,
  snapshots: SnapshotStore,
): Promise<GcResult> {
  const result: GcResult = { images: 0, blobs: 0, snapshots: 0 };
  const named = new Set([...records.names.values()].map((n) => n.id));
  for (const name of [...records.names.values()]) {
    if (!records.images.has(name.id)) await records.removeName(name.name);
  }
  for (const id of [...records.images.keys()]) {
    if (!named.has(id)) {
      await records.removeImage(id);
      result.images++;
    }
  }
  const liveBlobs = new Set<string>();
  const liveSnapshots = new Set<string>();
  for (const rec of records.images.values()) {
    liveBlobs.add(rec.manifestDigest).add(rec.configDigest);
    if (rec.indexDigest) liveBlobs.add(rec.indexDigest);
    for (const layer of rec.layers) {
      liveBlobs.add(layer.digest);
      liveSnapshots.add(layer.chainId);
    }
  }
  for (const lease of leases) {
    for (const blob of lease.blobs) liveBlobs.add(blob);
    for (const chainId of lease.chainIds) liveSnapshots.add(chainId);
  }
  for (const blob of await content.list()) {
    if (!liveBlobs.has(blob.digest) && (await content.delete(blob.digest))) result.blobs++;
  }
  for (const snap of await snapshots.list()) {
    if (!liveSnapshots.has(snap.chainId)) {
      await snapshots.remove(snap.chainId);
      result.snapshots++;
    }
  }
  return result;
}
