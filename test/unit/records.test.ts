// Image records on disk: names and images round-trip through a reload, tags move by one rewrite,
// and a damaged record (unparsable, or parsable with the wrong shape) is moved aside on load.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageRecords, type ImageRecord } from '../../src/image/records.ts';
import { sha256 } from '../../src/util/digest.ts';

async function tempRoot(t: TestContext): Promise<string> {
  const base = await mkdtemp(join(tmpdir(), 'berth-records-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  return base;
}

function record(seed: string): ImageRecord {
  const layer = { digest: sha256(`${seed} blob`), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', size: 10, diffId: sha256(`${seed} tar`), chainId: sha256(`${seed} tar`) };
  return {
    id: sha256(`${seed} config`),
    manifestDigest: sha256(`${seed} manifest`),
    manifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
    configDigest: sha256(`${seed} config`),
    configSize: 100,
    layers: [layer],
    user: '',
    createdAt: '2026-01-01T00:00:00.000Z',
  };
}

test('images and names survive a reload; a tag moves to another image', async (t) => {
  const root = await tempRoot(t);
  const recs = new ImageRecords(root);
  assert.deepEqual(await recs.load(), []);
  const a = record('a');
  const b = record('b');
  await recs.putImage(a);
  await recs.putImage(b);
  await recs.putName('example.test/app:v1', a.id);
  await recs.putName('example.test/app@sha256:' + 'c'.repeat(64), a.id);
  await recs.putName('example.test/app:v1', b.id);
  await recs.syncNames();
  assert.deepEqual(recs.namesOf(a.id), ['example.test/app@sha256:' + 'c'.repeat(64)]);
  assert.deepEqual(recs.namesOf(b.id), ['example.test/app:v1']);

  const again = new ImageRecords(root);
  assert.deepEqual(await again.load(), []);
  assert.deepEqual(again.images.get(a.id), a);
  assert.deepEqual(again.namesOf(b.id), ['example.test/app:v1']);
  assert.equal(again.names.get('example.test/app:v1')?.id, b.id);

  await again.removeName('example.test/app:v1');
  await again.removeImage(b.id);
  const third = new ImageRecords(root);
  await third.load();
  assert.deepEqual([...third.images.keys()], [a.id]);
  assert.deepEqual(third.namesOf(b.id), []);
});

test('damaged records are moved aside on load and cost only themselves', async (t) => {
  const root = await tempRoot(t);
  const recs = new ImageRecords(root);
  await recs.load();
  const good = record('good');
  await recs.putImage(good);
  await recs.putName('example.test/good:v1', good.id);
  const images = join(root, 'images');
  const names = join(root, 'names');
  const noLayers: Partial<ImageRecord> = record('x');
  delete noLayers.layers;
  const damaged: Array<[string, string]> = [
    [join(images, 'truncated.json'), '{"id": "sha256:'],
    [join(images, 'no-layers.json'), JSON.stringify(noLayers)],
    [join(images, 'layers-not-array.json'), JSON.stringify({ ...record('y'), layers: 'nope' })],
    [join(images, 'bad-layer.json'), JSON.stringify({ ...record('z'), layers: [{ digest: 'sha256:short' }] })],
    [join(images, 'null.json'), 'null'],
    [join(names, 'no-id.json'), JSON.stringify({ name: 'example.test/x:v1' })],
    [join(names, 'array.json'), '[]'],
  ];
  for (const [path, text] of damaged) await writeFile(path, text);
  await writeFile(join(images, '.tmp-interrupted'), 'half a write');

  const fresh = new ImageRecords(root);
  const bad = await fresh.load();
  assert.deepEqual(bad.sort(), damaged.map(([p]) => `${p}.corrupt`).sort());
  assert.deepEqual([...fresh.images.keys()], [good.id]);
  assert.deepEqual(fresh.namesOf(good.id), ['example.test/good:v1']);
  assert.ok(!(await readdir(images)).includes('.tmp-interrupted'), 'temp files of interrupted writes are removed');
  // What every ListImages walks: each loaded record has its layers.
  for (const rec of fresh.images.values()) assert.ok(rec.layers.every((l) => typeof l.size === 'number'));
});
