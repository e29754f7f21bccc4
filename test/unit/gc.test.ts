// Garbage collection over real stores: what a named image or a lease reaches stays; unnamed images,
// names of missing images, and blobs and snapshots nothing reaches go.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addImage, collectGarbage, noCandidates, sweep } from '../../src/image/gc.ts';
import { ImageRecords, type ImageRecord } from '../../src/image/records.ts';
import { ContentStore } from '../../src/content/store.ts';
import { SnapshotStore } from '../../src/snapshot/store.ts';
import { sha256 } from '../../src/util/digest.ts';

/** Real, empty image records, content and snapshot stores in a temp dir, and makers of blobs and snapshots. */
async function stores(t: TestContext) {
  const base = await mkdtemp(join(tmpdir(), 'berth-gc-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  const records = new ImageRecords(join(base, 'metadata'));
  await records.load();
  const content = new ContentStore(join(base, 'content'));
  await content.init();
  const snapshots = new SnapshotStore(join(base, 'snapshots'));
  await snapshots.cleanup();
  const blob = async (text: string): Promise<string> => (await content.put(sha256(text), Buffer.from(text))).digest;
  const snapshot = async (text: string): Promise<string> => {
    const diffId = sha256(text);
    await snapshots.unpackWith(diffId, null, diffId, {
      fill: async (dir) => {
        await writeFile(join(dir, 'f'), text);
        return { files: 1, dirs: 0, bytes: text.length, whiteouts: 0 };
      },
      skip: async () => {},
      cancel: () => {},
    });
    return diffId;
  };
  return { base, records, content, snapshots, blob, snapshot };
}

test('GC keeps what named images and leases reach and sweeps the rest', async (t) => {
  const { base, records, content, snapshots, blob, snapshot } = await stores(t);
  const image = async (seed: string): Promise<ImageRecord> => {
    const layerBlob = await blob(`${seed} layer`);
    const chainId = await snapshot(`${seed} layer`);
    const rec: ImageRecord = {
      id: await blob(`${seed} config`),
      manifestDigest: await blob(`${seed} manifest`),
      manifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
      indexDigest: await blob(`${seed} index`),
      configDigest: sha256(`${seed} config`),
      configSize: 1,
      layers: [{ digest: layerBlob, mediaType: 'application/vnd.oci.image.layer.v1.tar', size: 1, diffId: chainId, chainId }],
      user: '',
      createdAt: '',
    };
    await records.putImage(rec);
    return rec;
  };

  const named = await image('named');
  await records.putName('example.test/named:v1', named.id);
  const unnamed = await image('unnamed');
  const leased = await image('leased'); // its record has no name: the lease alone holds its layer and config
  const lease = { holder: 'container/x', imageId: leased.id, chainIds: [leased.layers[0]?.chainId ?? ''], blobs: [leased.configDigest] };
  const strayBlob = await blob('stray');
  const straySnapshot = await snapshot('stray');
  await records.putName('example.test/dangling:v1', sha256('no such image'));

  const result = await collectGarbage(records, [lease], content, snapshots);
  // 3 images x 4 blobs + the stray one, less the named image's 4 and the leased config.
  assert.deepEqual(result, { images: 2, blobs: 3 * 4 + 1 - 5, snapshots: 2 });

  assert.deepEqual([...records.images.keys()], [named.id]);
  assert.deepEqual([...records.names.keys()], ['example.test/named:v1'], 'the name of a missing image is dropped');
  const blobs = new Set((await content.list()).map((b) => b.digest));
  const reached = [named.id, named.manifestDigest, named.indexDigest, named.layers[0]?.digest, leased.configDigest];
  assert.deepEqual([...blobs].sort(), reached.map(String).sort());
  assert.ok(!blobs.has(strayBlob) && !blobs.has(unnamed.configDigest) && !blobs.has(leased.layers[0]?.digest ?? ''));
  const snaps = (await snapshots.list()).map((s) => s.chainId).sort();
  assert.deepEqual(snaps, [named.layers[0]?.chainId, leased.layers[0]?.chainId].map(String).sort());
  assert.ok(!snaps.includes(straySnapshot));

  const reloaded = new ImageRecords(join(base, 'metadata'));
  await reloaded.load();
  assert.deepEqual([...reloaded.images.keys()], [named.id], 'removals reached the disk');
  assert.deepEqual(await collectGarbage(reloaded, [lease], content, snapshots), { images: 0, blobs: 0, snapshots: 0 }, 'a second run finds nothing');
});

test('a sweep after a removal takes only what the removed image held and nothing else reaches', async (t) => {
  const { base, records, content, snapshots, blob, snapshot } = await stores(t);
  const shared = { digest: await blob('shared layer'), mediaType: 'application/vnd.oci.image.layer.v1.tar', size: 1, diffId: await snapshot('shared layer'), chainId: sha256('shared layer') };
  const image = async (seed: string): Promise<ImageRecord> => {
    const rec: ImageRecord = {
      id: await blob(`${seed} config`),
      manifestDigest: await blob(`${seed} manifest`),
      manifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
      configDigest: sha256(`${seed} config`),
      configSize: 1,
      layers: [shared],
      user: '',
      createdAt: '',
    };
    await records.putImage(rec);
    await records.putName(`example.test/${seed}:v1`, rec.id);
    return rec;
  };
  const gone = await image('gone');
  const kept = await image('kept');
  const stray = await blob('stray'); // unreferenced, but no removal held it: left for the full GC
  await records.removeName('example.test/gone:v1');
  await records.removeImage(gone.id);
  const candidates = noCandidates();
  addImage(candidates, gone);

  assert.deepEqual(await sweep(records, [], content, snapshots, candidates), { blobs: 2, snapshots: 0 });
  const blobs = new Set((await content.list()).map((b) => b.digest));
  assert.deepEqual([...blobs].sort(), [kept.configDigest, kept.manifestDigest, shared.digest, stray].sort(), 'the shared layer and the stray blob stay');
  assert.deepEqual((await snapshots.list()).map((s) => s.chainId), [shared.chainId], 'the shared snapshot stays');

  await records.removeName('example.test/kept:v1');
  await records.removeImage(kept.id);
  const last = noCandidates();
  addImage(last, kept);
  assert.deepEqual(await sweep(records, [], content, snapshots, last), { blobs: 3, snapshots: 1 }, 'the last holder gone, the shared layer goes');
  await snapshots.settle();
  assert.deepEqual((await readdir(join(base, 'snapshots'))).sort(), [], 'the removed snapshot left no files behind');
});
