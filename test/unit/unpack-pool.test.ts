// The unpack worker pool: layers unpack in worker threads, failures come back as the right error
// kinds, a failed worker is replaced so queued layers still run, and a failed layer returns only
// once its worker has stopped writing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, mkdir, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { INLINE_MAX, UnpackPool } from '../../src/snapshot/unpack-pool.ts';
import { buildLayer, type FileSpec } from '../helpers/images.ts';
import { until } from '../helpers/poll.ts';
import { BerthError } from '../../src/util/errors.ts';
import { ROOT_ONLY } from '../helpers/root.ts';

const execFileAsync = promisify(execFile);

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

test("a worker uses the daemon's compile cache", async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'berth-pool-cache-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  const layer = await buildLayer({ files: [{ path: 'cached.txt', content: 'compiled once' }], compression: 'gzip' });
  await writeFile(join(base, 'layer.tgz'), layer.bytes ?? Buffer.alloc(0));
  // A daemon of its own (plain node, as bin/berthd.js runs): turns the cache on, then either only
  // loads the pool or also unpacks a layer in a worker (no size given, so never inline).
  const script = join(base, 'daemon.ts');
  await writeFile(script, [
    "import { enableCompileCache } from 'node:module';",
    "import { readFileSync, mkdirSync } from 'node:fs';",
    "import { Readable } from 'node:stream';",
    'enableCompileCache(process.argv[2]);',
    `const { UnpackPool } = await import(${JSON.stringify(new URL('../../src/snapshot/unpack-pool.ts', import.meta.url).href)});`,
    'const pool = new UnpackPool(1);',
    "if (process.argv[3] === 'unpack') {",
    "  mkdirSync(process.argv[4]);",
    `  await pool.unpack(process.argv[4], Readable.from([readFileSync(${JSON.stringify(join(base, 'layer.tgz'))})]), [], ${JSON.stringify(layer.diffId)}, 'layer');`,
    '}',
    'await pool.close();',
  ].join('\n'));
  const cacheFiles = async (mode: string): Promise<number> => {
    const cache = join(base, `cache-${mode}`);
    await execFileAsync(process.execPath, [script, cache, mode, join(base, `fs-${mode}`)]);
    return (await readdir(cache, { recursive: true })).length;
  };
  const daemonOnly = await cacheFiles('load');
  const withWorker = await cacheFiles('unpack');
  assert.equal(readFileSync(join(base, 'fs-unpack', 'cached.txt'), 'utf8'), 'compiled once');
  assert.ok(withWorker > daemonOnly, `the worker's modules were not cached (${withWorker} entries with a worker, ${daemonOnly} without)`);
});
