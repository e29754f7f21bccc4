// Snapshot store: atomic appearance under the chain ID, shared concurrent unpacks, crash leftovers.
// Layers go in as the pull pipeline puts them: unpackWith() filled by the unpack worker pool.
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { pack, type Header } from 'tar-stream';
import { SnapshotStore, type SnapshotInfo } from '../../src/snapshot/store.ts';
import { UnpackPool } from '../../src/snapshot/unpack-pool.ts';
import { until } from '../helpers/poll.ts';
import { chainIds, digestHex, sha256 } from '../../src/util/digest.ts';
import { BerthError } from '../../src/util/errors.ts';
import { ROOT_ONLY } from '../helpers/root.ts';

type Entry = Partial<Header> & { name: string; data?: string };

async function tarOf(entries: Entry[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => chunks.push(c as Buffer));
  const ended = new Promise<void>((resolve) => p.once('end', () => resolve()));
  for (const { data, ...header } of entries) {
    await new Promise<void>((resolve, reject) => p.entry(header, data ?? '', (err) => (err ? reject(err) : resolve())));
  }
  p.finalize();
  await ended;
  return Buffer.concat(chunks);
}

interface Layer {
  tar: Buffer;
  diffId: string;
}

async function layer(entries: Entry[]): Promise<Layer> {
  const tar = await tarOf(entries);
  return { tar, diffId: sha256(tar) };
}

const pool = new UnpackPool(2);
after(() => pool.close());

/** What the pull pipeline does with a layer stream (src/image/pull.ts), minus the registry. */
function unpack(store: SnapshotStore, chainId: string, parent: string | null, diffId: string, tar: Readable): Promise<SnapshotInfo> {
  // As pull.ts does: a stream that fails before the unpack reads it (the temp dir is being made)
  // fails the unpack through its pipeline, not the test process through an unhandled 'error'.
  tar.on('error', () => undefined);
  return store.unpackWith(chainId, parent, diffId, {
    fill: (dir) => pool.unpack(dir, tar, [], diffId, `test layer ${diffId}`),
    skip: async () => {
      const drained = finished(tar).catch(() => {});
      tar.resume();
      await drained;
    },
    cancel: () => tar.destroy(),
  });
}

async function newStore(t: TestContext): Promise<{ root: string; store: SnapshotStore }> {
  const base = await mkdtemp(join(tmpdir(), 'berth-snapshots-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  const root = join(base, 'snapshots');
  const store = new SnapshotStore(root);
  await store.cleanup();
  return { root, store };
}

const entriesOf = async (root: string): Promise<string[]> => (await readdir(root)).sort();

test('unpack appears atomically under the chain ID with its info', ROOT_ONLY, async (t) => {
  const { root, store } = await newStore(t);
  const base = await layer([{ name: 'etc/os-release', data: 'ID=base\n' }]);
  const top = await layer([{ name: 'app', data: 'hello' }, { name: '.wh.etc', data: '' }]);
  const [baseId, topId] = chainIds([base.diffId, top.diffId]) as [string, string];

  const info = await unpack(store, baseId, null, base.diffId, Readable.from([base.tar]));
  assert.deepEqual({ ...info, createdAt: '' }, { chainId: baseId, diffId: base.diffId, parent: null, size: 8, inodes: 3, createdAt: '' });
  await unpack(store, topId, baseId, top.diffId, Readable.from([top.tar]));

  assert.deepEqual(await entriesOf(root), [digestHex(baseId), digestHex(topId)].sort(), 'no temp dirs left');
  assert.deepEqual(await entriesOf(join(root, digestHex(topId))), ['fs', 'info.json']);
  assert.equal(await readFile(join(store.fsPath(baseId), 'etc/os-release'), 'utf8'), 'ID=base\n');
  assert.equal(await readFile(join(store.fsPath(topId), 'app'), 'utf8'), 'hello');
  const onDisk = JSON.parse(await readFile(join(root, digestHex(topId), 'info.json'), 'utf8')) as { parent: string };
  assert.equal(onDisk.parent, baseId);

  assert.equal(await store.has(baseId), true);
  assert.equal((await store.get(topId))?.diffId, top.diffId);
  assert.deepEqual(store.lowerDirs([baseId, topId]), [store.fsPath(topId), store.fsPath(baseId)], 'top-first');
  assert.equal((await store.list()).length, 2);
  assert.deepEqual(await store.usage(), { bytes: 13, inodes: 3 + 3 });

  const reopened = new SnapshotStore(root);
  assert.deepEqual((await reopened.list()).map((s) => s.chainId).sort(), [baseId, topId].sort(), 'index rebuilt from disk');
});

test('concurrent unpacks of one chain ID share a single operation', ROOT_ONLY, async (t) => {
  const { root, store } = await newStore(t);
  const l = await layer([{ name: 'f', data: 'x'.repeat(5000) }]);
  const [id] = chainIds([l.diffId]) as [string];

  const slow = new PassThrough();
  const first = unpack(store, id, null, l.diffId, slow);
  slow.write(l.tar.subarray(0, 1024));
  await until('the first unpack to start', async () => (await entriesOf(root)).some((n) => n.startsWith('.tmp-')));
  const second = new PassThrough();
  let secondDrained = false;
  second.on('end', () => {
    secondDrained = true;
  });
  const again = unpack(store, id, null, l.diffId, second);
  second.end(l.tar);
  const temps = (await entriesOf(root)).filter((n) => n.startsWith('.tmp-'));
  assert.equal(temps.length, 1, 'one unpack in progress');
  slow.end(l.tar.subarray(1024));

  const [a, b] = await Promise.all([first, again]);
  assert.equal(a, b);
  assert.equal(secondDrained, true, "the duplicate stream is drained so its producer can finish");
  assert.deepEqual(await entriesOf(root), [digestHex(id)]);

  const third = Readable.from([l.tar]);
  assert.deepEqual(await unpack(store, id, null, l.diffId, third), a, 'an existing snapshot is returned');
  assert.equal(third.readableEnded, true);
});

test('two stores racing on one root: the first rename wins, the loser discards its copy', ROOT_ONLY, async (t) => {
  const { root, store } = await newStore(t);
  const other = new SnapshotStore(root);
  const l = await layer([{ name: 'f', data: 'same' }]);
  const [id] = chainIds([l.diffId]) as [string];
  const [a, b] = await Promise.all([
    unpack(store, id, null, l.diffId, Readable.from([l.tar])),
    unpack(other, id, null, l.diffId, Readable.from([l.tar])),
  ]);
  assert.equal(a.chainId, b.chainId);
  assert.deepEqual(await entriesOf(root), [digestHex(id)]);
  assert.deepEqual(await entriesOf(join(root, digestHex(id))), ['fs', 'info.json']);
});

test('a stream failing mid-layer leaves nothing under the real name', ROOT_ONLY, async (t) => {
  const { root, store } = await newStore(t);
  const l = await layer([{ name: 'big', data: 'y'.repeat(100_000) }]);
  const [id] = chainIds([l.diffId]) as [string];
  const source = new PassThrough();
  const job = unpack(store, id, null, l.diffId, source);
  source.write(l.tar.subarray(0, 20_000));
  await until('the unpack to start', async () => (await entriesOf(root)).some((n) => n.startsWith('.tmp-')));
  source.destroy(new Error('connection reset'));
  await assert.rejects(job, /connection reset/);
  assert.equal(await store.has(id), false);
  assert.deepEqual(await entriesOf(root), [], 'temp dir removed too');

  const hostile = await layer([{ name: '../../escape', data: 'x' }]);
  const [hid] = chainIds([hostile.diffId]) as [string];
  await assert.rejects(unpack(store, hid, null, hostile.diffId, Readable.from([hostile.tar])), (err: unknown) => {
    assert.ok(err instanceof BerthError && err.kind === 'invalid-argument');
    return true;
  });
  assert.deepEqual(await entriesOf(root), []);
});

test('the snapshot root spreads snapshots over block groups where the filesystem can (ext4 "T" attribute)', async (t) => {
  const { root } = await newStore(t);
  const shown = spawnSync('lsattr', ['-d', root], { encoding: 'utf8' });
  if (shown.status !== 0) {
    t.skip(`this filesystem keeps no such attributes (lsattr: ${shown.stderr.trim() || shown.error?.message})`);
    return;
  }
  const flags = shown.stdout.split(' ')[0] ?? '';
  assert.ok(flags.includes('T'), `snapshot root attributes ${flags} lack T`);
});

test('chain IDs are checked against parent + diff ID', ROOT_ONLY, async (t) => {
  const { store } = await newStore(t);
  const l = await layer([{ name: 'f', data: 'z' }]);
  const wrong = sha256('not this layer');
  await assert.rejects(unpack(store, wrong, null, l.diffId, Readable.from([l.tar])), /does not match/);
  await assert.rejects(unpack(store, l.diffId, wrong, l.diffId, Readable.from([l.tar])), /does not match/);
  await assert.rejects(unpack(store, 'sha256:nope', null, l.diffId, Readable.from([l.tar])), /not a sha256 digest/);
});

test('cleanup sweeps temp dirs and snapshot dirs without valid info; remove deletes', ROOT_ONLY, async (t) => {
  const { root, store } = await newStore(t);
  const l = await layer([{ name: 'keep', data: 'k' }]);
  const [id] = chainIds([l.diffId]) as [string];
  await unpack(store, id, null, l.diffId, Readable.from([l.tar]));

  await mkdir(join(root, '.tmp-crashed', 'fs', 'half'), { recursive: true });
  await writeFile(join(root, '.tmp-crashed', 'fs', 'half', 'file'), 'partial');
  const broken = 'b'.repeat(64);
  await mkdir(join(root, broken, 'fs'), { recursive: true });
  await mkdir(join(root, 'unrelated'));

  const fresh = new SnapshotStore(root);
  assert.equal(await fresh.cleanup(), 2);
  assert.deepEqual(await entriesOf(root), [digestHex(id), 'unrelated'].sort());
  assert.equal(await fresh.has(id), true);

  assert.equal(await fresh.remove(id), true);
  assert.equal(await fresh.remove(id), false);
  assert.equal(await fresh.has(id), false);
  assert.equal(existsSync(join(root, digestHex(id))), false);
  assert.deepEqual(await fresh.usage(), { bytes: 0, inodes: 0 });
});

test('remove leaves an in-flight unpack alone', ROOT_ONLY, async (t) => {
  const { root, store } = await newStore(t);
  const l = await layer([{ name: 'f', data: 'w' }]);
  const [id] = chainIds([l.diffId]) as [string];
  const source = new PassThrough();
  const job = unpack(store, id, null, l.diffId, source);
  assert.equal(await store.remove(id), false);
  source.end(l.tar);
  await job;
  assert.equal(await store.has(id), true);
  assert.deepEqual(await entriesOf(root), [digestHex(id)]);
});
