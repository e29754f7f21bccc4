import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { text } from 'node:stream/consumers';
import { ContentStore, ContentVerificationError } from '../../src/content/store.ts';
import { BerthError } from '../../src/util/errors.ts';
import { sha256 } from '../../src/util/digest.ts';

async function newStore(t: { after: (fn: () => Promise<void>) => void }, root?: string): Promise<ContentStore> {
  const dir = root ?? (await mkdtemp(join(tmpdir(), 'berth-content-')));
  if (!root) t.after(() => rm(dir, { recursive: true, force: true }));
  const store = new ContentStore(dir);
  await store.init();
  return store;
}

/** Split a buffer into chunks so writes arrive the way a network body does. */
function chunked(data: Buffer, size = 7919): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) parts.push(data.subarray(i, i + size));
  return Readable.from(parts);
}

async function ingestLeftovers(store: ContentStore): Promise<string[]> {
  return readdir(store.ingestDir);
}

void test('ingest streams a blob in, verifies it and makes it readable', async (t) => {
  const store = await newStore(t);
  const data = randomBytes(300_000);
  const digest = sha256(data);
  const info = await store.ingest({ digest, size: data.length }, chunked(data));
  assert.deepEqual(info, { digest, size: data.length });
  assert.equal(await store.has(digest), true);
  assert.equal(await store.size(digest), data.length);
  assert.deepEqual(await store.readBuffer(digest), data);
  assert.equal(store.path(digest), join(store.root, 'blobs', 'sha256', digest.slice(7)));
  const stream = await store.createReadStream(digest, { start: 10, end: 19 });
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  assert.deepEqual(Buffer.concat(chunks), data.subarray(10, 20));
  assert.deepEqual(await store.list(), [{ digest, size: data.length }]);
  assert.deepEqual(await store.usage(), { bytes: data.length, count: 1 });
  assert.deepEqual(await ingestLeftovers(store), []);
});

void test('a wrong digest fails verification and leaves neither temp nor blob', async (t) => {
  const store = await newStore(t);
  const data = Buffer.from('hello, berth');
  const claimed = sha256('something else');
  await assert.rejects(store.ingest({ digest: claimed, size: data.length }, chunked(data, 3)), (err: unknown) => {
    assert.ok(err instanceof ContentVerificationError);
    assert.ok(err instanceof BerthError);
    assert.equal(err.kind, 'internal');
    assert.equal(
      err.message,
      `content verification failed for ${claimed}: expected digest ${claimed} (size ${data.length}), got ${sha256(data)} (size ${data.length})`,
    );
    return true;
  });
  assert.equal(await store.has(claimed), false);
  assert.equal(await store.has(sha256(data)), false);
  assert.deepEqual(await ingestLeftovers(store), []);
  assert.deepEqual(await store.list(), []);
});

void test('a wrong size fails, whether the body is short or runs past the declared size', async (t) => {
  const store = await newStore(t);
  const data = randomBytes(50_000);
  const digest = sha256(data);
  await assert.rejects(store.ingest({ digest, size: data.length + 1 }, chunked(data)), /expected digest .* \(size 50001\), got .* \(size 50000\)/);
  // Too long: rejected while streaming, before the whole body hits the disk.
  await assert.rejects(store.ingest({ digest, size: 1000 }, chunked(data)), (err: unknown) => {
    assert.ok(err instanceof ContentVerificationError);
    assert.match(err.message, /got more than 1000 bytes/);
    return true;
  });
  assert.equal(await store.has(digest), false);
  assert.deepEqual(await ingestLeftovers(store), []);
});

void test('the writer form: pipe, commit, and abort', async (t) => {
  const store = await newStore(t);
  const data = randomBytes(100_000);
  const digest = sha256(data);

  const aborted = store.writer({ digest });
  aborted.write(data.subarray(0, 1000));
  await aborted.abort();
  await aborted.abort();
  assert.deepEqual(await ingestLeftovers(store), []);
  await assert.rejects(aborted.commit(), (err: unknown) => err instanceof BerthError && err.kind === 'failed-precondition');

  // Abort straight after creation must not race the temp file's open.
  await store.writer({ digest }).abort();
  assert.deepEqual(await ingestLeftovers(store), []);

  // One download teed into the store and into a second consumer (as the pull pipeline does with its unpacker).
  const writer = store.writer({ digest, size: data.length });
  const tee = new PassThrough();
  const other = new PassThrough();
  tee.pipe(writer);
  tee.pipe(other);
  const seen = createHash('sha256');
  other.on('data', (chunk: Buffer) => seen.update(chunk));
  await pipeline(chunked(data), tee);
  assert.deepEqual(await writer.commit(), { digest, size: data.length });
  assert.deepEqual(await writer.commit(), { digest, size: data.length });
  assert.equal(`sha256:${seen.digest('hex')}`, digest);
  assert.equal(writer.written, data.length);
  await writer.abort(); // no-op after commit
  assert.deepEqual(await store.readBuffer(digest), data);
});

void test('init sweeps ingest files and put() temps that a crash left behind', async (t) => {
  const store = await newStore(t);
  const kept = await store.put(sha256('kept'), Buffer.from('kept'));
  const stale = join(store.ingestDir, `.${'a'.repeat(64)}.tmp-123456`);
  await writeFile(stale, 'half a layer');
  await mkdir(join(store.ingestDir, 'odd-dir'));
  const staleBlobTemp = join(store.blobDir, `.${'b'.repeat(64)}.tmp-abcdef`);
  await writeFile(staleBlobTemp, 'half a manifest');

  const again = await newStore(t, store.root);
  assert.deepEqual(await ingestLeftovers(again), []);
  assert.deepEqual(await readdir(again.blobDir), [kept.digest.slice(7)]);
  assert.deepEqual(await again.list(), [kept]);
});

void test('put verifies small blobs; delete and missing-blob errors', async (t) => {
  const store = await newStore(t);
  const manifest = Buffer.from('{"schemaVersion":2}');
  const digest = sha256(manifest);
  assert.deepEqual(await store.put(digest, manifest), { digest, size: manifest.length });
  assert.deepEqual(await store.put(digest, manifest), { digest, size: manifest.length });
  assert.equal(await text(await store.createReadStream(digest)), manifest.toString());
  await assert.rejects(store.put(sha256('other'), manifest), ContentVerificationError);
  await assert.rejects(store.put('sha256:nope', manifest), (err: unknown) => err instanceof BerthError && err.kind === 'invalid-argument');
  assert.throws(() => store.writer({ digest: 'md5:abc' }), (err: unknown) => err instanceof BerthError && err.kind === 'invalid-argument');

  assert.equal(await store.delete(digest), true);
  assert.equal(await store.delete(digest), false);
  assert.equal(await store.size(digest), undefined);
  const isNotFound = (err: unknown): boolean => err instanceof BerthError && err.kind === 'not-found';
  await assert.rejects(store.readBuffer(digest), isNotFound);
  await assert.rejects(store.createReadStream(digest), isNotFound);
  assert.deepEqual(await store.usage(), { bytes: 0, count: 0 });
});

void test('concurrent writers of the same digest both succeed and leave one blob', async (t) => {
  const store = await newStore(t);
  const data = randomBytes(200_000);
  const digest = sha256(data);
  const results = await Promise.all([
    store.ingest({ digest, size: data.length }, chunked(data, 4096)),
    store.ingest({ digest, size: data.length }, chunked(data, 10_000)),
    store.ingest({ digest }, chunked(data, 65_536)),
  ]);
  for (const info of results) assert.deepEqual(info, { digest, size: data.length });
  assert.deepEqual(await store.list(), [{ digest, size: data.length }]);
  assert.deepEqual(await store.readBuffer(digest), data);
  assert.deepEqual(await ingestLeftovers(store), []);
});

void test('ENOSPC while writing becomes RESOURCE_EXHAUSTED and removes the temp', async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root to mount a tmpfs');
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'berth-content-full-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
  try {
    const store = await newStore(t, dir);
    const big = randomBytes(2 << 20);
    const isDiskFull = (err: unknown): boolean =>
      err instanceof BerthError && err.kind === 'resource-exhausted' && /^disk full while writing /.test(err.message);
    await assert.rejects(store.ingest({ digest: sha256(big), size: big.length }, chunked(big, 65_536)), isDiskFull);
    assert.deepEqual(await ingestLeftovers(store), []);
    assert.deepEqual(await readdir(store.blobDir), []);

    await assert.rejects(store.put(sha256(big), big), isDiskFull);
    assert.deepEqual(await readdir(store.blobDir), []);

    // The store still works once there is room again.
    const small = Buffer.from('fits');
    await store.ingest({ digest: sha256(small) }, chunked(small));
    assert.equal(await store.has(sha256(small)), true);
  } finally {
    execFileSync('umount', [dir]);
  }
});
