// The unpack worker pool: layers unpack in worker threads, failures come back as the right error
// kinds, and a failed worker is replaced so queued layers still run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { UnpackPool } from '../../src/snapshot/unpack-pool.ts';
import { buildLayer } from '../helpers/images.ts';
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
});
