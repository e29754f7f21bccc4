// RecordDir: crash-safe JSON records with validation on load, prefix lookup and ordered writes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RecordDir } from '../../src/store/record-dir.ts';
import { isSandboxRecord, type SandboxRecord } from '../../src/sandbox/record.ts';
import { isContainerRecord } from '../../src/container/record.ts';

interface Rec {
  id: string;
  n: number;
}
const isRec = (v: unknown): v is Rec => typeof (v as Rec)?.id === 'string' && typeof (v as Rec)?.n === 'number';

test('a damaged or misnamed record is moved aside and costs only itself', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-records-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const a = new RecordDir<Rec>(dir, isRec);
  await a.load();
  await a.put({ id: 'aaa1', n: 1 });
  await a.put({ id: 'bbb2', n: 2 });
  await writeFile(join(dir, 'ccc3.json'), '{"id": "ccc3", "n": ');
  await writeFile(join(dir, 'ddd4.json'), JSON.stringify({ id: 'other', n: 4 }));
  await writeFile(join(dir, '.eee5.json.tmp-123'), 'half');
  const b = new RecordDir<Rec>(dir, isRec);
  const bad = await b.load();
  assert.deepEqual(bad.sort(), [join(dir, 'ccc3.json.corrupt'), join(dir, 'ddd4.json.corrupt')]);
  assert.deepEqual(b.all().map((r) => r.id).sort(), ['aaa1', 'bbb2']);
  assert.deepEqual((await readdir(dir)).sort(), ['aaa1.json', 'bbb2.json', 'ccc3.json.corrupt', 'ddd4.json.corrupt']);
});

test('lookup by full ID or unique prefix; an ambiguous prefix is refused', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-records-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const r = new RecordDir<Rec>(dir, isRec);
  await r.load();
  await r.put({ id: 'abc1', n: 1 });
  await r.put({ id: 'abd2', n: 2 });
  assert.equal(r.find('abc', 'thing')?.n, 1);
  assert.equal(r.find('abd2', 'thing')?.n, 2);
  assert.equal(r.find('zz', 'thing'), undefined);
  assert.throws(() => r.find('ab', 'thing'), /prefix ab is ambiguous: it matches 2 things/);
});

test('concurrent writes of one record leave the last one on disk', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-records-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const r = new RecordDir<Rec>(dir, isRec);
  await r.load();
  await Promise.all(Array.from({ length: 20 }, (_, n) => r.put({ id: 'x', n })));
  assert.equal(JSON.parse(await readFile(join(dir, 'x.json'), 'utf8')).n, 19);
  await r.remove('x');
  assert.deepEqual(await readdir(dir), []);
});

test('sandbox and container record checks refuse records of the wrong shape', () => {
  const sb: SandboxRecord = {
    id: 'a'.repeat(64),
    owner: 'cri',
    key: 'n_ns_uid_0',
    config: { metadata: { name: 'n', namespace: 'ns', uid: 'uid', attempt: 0 }, labels: {}, annotations: {} } as unknown as SandboxRecord['config'],
    runtimeHandler: 'runc',
    createdAt: 1,
    state: 'ready',
    hostNetwork: false,
    hostIpc: false,
    hostPid: false,
    ips: ['10.0.0.2'],
    dir: '/run/berth/sandboxes/a',
    cgroupParent: '',
  };
  assert.ok(isSandboxRecord(sb));
  assert.ok(!isSandboxRecord({ ...sb, owner: 'kubelet' }));
  assert.ok(!isSandboxRecord({ ...sb, id: 'short' }));
  assert.ok(!isSandboxRecord({ ...sb, pidHolder: { pid: '1' } }));
  assert.ok(!isContainerRecord({ ...sb }));
});
