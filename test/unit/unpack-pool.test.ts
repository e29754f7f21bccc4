// The unpack worker pool: layers unpack in worker threads, failures come back as the right error
// kinds, a failed worker is replaced so queued layers still run, and a failed layer returns only
// once its worker has stopped writing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { INLINE_MAX, UnpackPool } from '../../src/snapshot/unpack-pool.ts';
import { buildLayer, type FileSpec } from '../helpers/images.ts';
import { until } from '../helpers/poll.ts';
import { BerthError } from '../../src/util/errors.ts';
import { ROOT_ONLY } from '../helpers/root.ts';

test('a pool of one survives a failed layer and unpacks the layers queued behind it', ROOT_ONLY, async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'berth-pool-'));
  const pool = new UnpackPool(1);
  t.after(async () => {
    await pool.close();
    await rm(base, { recursive: true, force: true });
  });
  const good = await buildLayer({ files: [{ path: 'hello.txt', content: 'hello from a worker' }], compression: 'gzip' });
  const dirs = await Promise.all(['bad', 'good1', 'good2'].map(async (name) => {
    const dir = join(base, name);
    await mkdir(dir);
    return dir;
  }));
  const bytes = good.bytes ?? Buffer.alloc(0);
  const [bad, ok1, ok2] = await Promise.allSettled([
    // Right bytes, wrong expected diff ID: the worker must refuse them.
    pool.unpack(dirs[0] ?? '', Readable.from([bytes]), [], `sha256:${'0'.repeat(64)}`, 'bad layer'),
    pool.unpack(dirs[1] ?? '', Readable.from([bytes]), [], good.diffId, 'good layer 1'),
    pool.unpack(dirs[2] ?? '', Readable.from([bytes]), [], good.diffId, 'good layer 2'),
  ]);
  assert.equal(bad.status, 'rejected');
  const reason = (bad as PromiseRejectedResult).reason as BerthError;
  assert.ok(reason instanceof BerthError, 'error kind survives the thread boundary');
  assert.match(reason.message, /bad layer: expected digest sha256:0{64}, got sha256:[a-f0-9]{64}/);
  assert.equal(ok1.status, 'fulfilled');
  assert.equal(ok2.status, 'fulfilled');
  assert.equal(await readFile(join(dirs[2] ?? '', 'hello.txt'), 'utf8'), 'hello from a worker');
  // Workers exist only while there is work: idle ones exit and give their memory back.
  assert.equal(pool.workers, 1);
  await until('the idle worker to exit', () => pool.workers === 0);
});

test('a small layer (size known, within INLINE_MAX) unpacks without starting a worker', async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'berth-pool-inline-'));
  const pool = new UnpackPool(1);
  t.after(async () => {
    await pool.close();
    await rm(base, { recursive: true, force: true });
  });
  const layer = await buildLayer({ files: [{ path: 'small.txt', content: 'inline' }], compression: 'zstd' });
  const bytes = layer.bytes ?? Buffer.alloc(0);
  assert.ok(bytes.length <= INLINE_MAX);
  const stats = await pool.unpack(base, Readable.from([bytes]), [], layer.diffId, 'small layer', bytes.length);
  assert.equal(stats.files, 1);
  assert.equal(await readFile(join(base, 'small.txt'), 'utf8'), 'inline');
  assert.equal(pool.workers, 0);
  const other = join(base, 'other');
  await mkdir(other);
  await assert.rejects(pool.unpack(other, Readable.from([bytes]), [], `sha256:${'1'.repeat(64)}`, 'wrong digest', bytes.length), /wrong digest: expected digest/);
  assert.equal(pool.workers, 0);
});

/** mknod processes this process (or one of its worker threads) started that are still running. */
function runningMknods(): number {
  let n = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = readFileSync(`/proc/${entry}/status`, 'utf8');
      if (/^Name:\s+mknod$/m.test(status) && new RegExp(`^PPid:\\s+${process.pid}$`, 'm').test(status)) n++;
    } catch {
      // exited meanwhile
    }
  }
  return n;
}

test('a layer whose download fails returns only after its worker stopped writing', ROOT_ONLY, async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'berth-pool-stop-'));
  const pool = new UnpackPool(1);
  t.after(async () => {
    await pool.close();
    await rm(base, { recursive: true, force: true });
  });
  // Fifos first (each one a mknod child), then a file big enough that the first batch reaches the
  // worker before the download fails in the middle of it.
  const fifos = Array.from({ length: 300 }, (_, i): FileSpec => ({ path: `fifo${i}`, type: 'fifo' }));
  const layer = await buildLayer({ files: [...fifos, { path: 'big', content: randomBytes(3 << 20) }], compression: 'none' });
  const bytes = layer.bytes ?? Buffer.alloc(0);
  const dir = join(base, 'layer');
  await mkdir(dir);
  const source = new PassThrough();
  const job = pool.unpack(dir, source, [], layer.diffId, 'failing layer');
  source.write(bytes.subarray(0, 2 << 20));
  await until('the worker to start on the fifos', () => readdirSync(dir).length > 0);
  source.destroy(new Error('connection reset by peer'));
  await assert.rejects(job, /connection reset by peer/);
  assert.equal(runningMknods(), 0, 'no mknod child still writes into the layer');
  const after = readdirSync(dir).length;
  // The pool still works, with the same or a replacement worker.
  const good = await buildLayer({ files: [{ path: 'ok', content: 'ok' }], compression: 'gzip' });
  const dir2 = join(base, 'good');
  await mkdir(dir2);
  await pool.unpack(dir2, Readable.from([good.bytes ?? Buffer.alloc(0)]), [], good.diffId, 'good layer');
  assert.equal(readdirSync(dir).length, after, 'nothing appeared in the failed layer afterwards');
});

test('with its one worker busy, a second big layer unpacks in the calling thread instead of queueing', { ...ROOT_ONLY, timeout: 60_000 }, async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'berth-pool-spare-'));
  const pool = new UnpackPool(1);
  t.after(async () => {
    await pool.close();
    await rm(base, { recursive: true, force: true });
  });
  const first = await buildLayer({ files: [{ path: 'first.bin', content: randomBytes(1 << 20) }], compression: 'gzip' });
  const second = await buildLayer({ files: [{ path: 'second.txt', content: 'unpacked while the worker was busy' }], compression: 'gzip' });
  const [dir1, dir2, dir3] = await Promise.all(['first', 'second', 'third'].map(async (name) => {
    const dir = join(base, name);
    await mkdir(dir);
    return dir;
  }));
  const firstBytes = first.bytes ?? Buffer.alloc(0);
  const held = new PassThrough();
  // No size given: both count as big layers. The first takes the worker and stays half-sent.
  const firstJob = pool.unpack(dir1 ?? '', held, [], first.diffId, 'held layer');
  held.write(firstBytes.subarray(0, firstBytes.length >> 1));
  const stats = await pool.unpack(dir2 ?? '', Readable.from([second.bytes ?? Buffer.alloc(0)]), [], second.diffId, 'second layer');
  assert.equal(stats.files, 1);
  assert.equal(await readFile(join(dir2 ?? '', 'second.txt'), 'utf8'), 'unpacked while the worker was busy');
  assert.equal(pool.workers, 1, 'no second worker was started');

  // A third waits for the worker; its download failing meanwhile fails that layer, not the process.
  const waiting = new PassThrough();
  const thirdJob = pool.unpack(dir3 ?? '', waiting, [], second.diffId, 'third layer');
  const thirdFails = assert.rejects(thirdJob, /connection reset while queued/);
  waiting.destroy(new Error('connection reset while queued'));
  held.end(firstBytes.subarray(firstBytes.length >> 1));
  assert.equal((await firstJob).bytes, 1 << 20);
  await thirdFails;
});

test('a layer many transfer buffers long arrives intact, compressed or plain (the worker hands its buffers back for refilling)', { ...ROOT_ONLY, timeout: 60_000 }, async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'berth-pool-reuse-'));
  const pool = new UnpackPool(1);
  t.after(async () => {
    await pool.close();
    await rm(base, { recursive: true, force: true });
  });
  // Incompressible, so the compressed layer too spans many 1 MiB buffers: with at most a few in
  // flight, later bytes travel in buffers the worker has already returned once.
  const content = randomBytes(12 << 20);
  for (const compression of ['gzip', 'none'] as const) {
    const layer = await buildLayer({ files: [{ path: 'blob.bin', content }, { path: 'note.txt', content: compression }], compression });
    const bytes = layer.bytes ?? Buffer.alloc(0);
    const dir = join(base, compression);
    await mkdir(dir);
    // Network-sized chunks, as a download delivers them; no size given, so the worker unpacks it.
    const chunks = Array.from({ length: Math.ceil(bytes.length / 65536) }, (_, i) => bytes.subarray(i * 65536, (i + 1) * 65536));
    const stats = await pool.unpack(dir, Readable.from(chunks), [], layer.diffId, `${compression} layer`);
    assert.equal(stats.bytes, content.length + compression.length);
    assert.ok((await readFile(join(dir, 'blob.bin'))).equals(content), `${compression}: the file holds the bytes sent`);
    assert.equal(await readFile(join(dir, 'note.txt'), 'utf8'), compression);
  }
});
