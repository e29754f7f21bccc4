// errnoCode and unlessMissing: the one way berth reads a system call's errno and treats "not there".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { BerthError, errnoCode, unlessMissing } from '../../src/util/errors.ts';

test('errnoCode names a system error and nothing else', async () => {
  assert.equal(errnoCode(await readFile('/nonexistent/berth').catch((e: unknown) => e)), 'ENOENT');
  assert.equal(errnoCode(Object.assign(new Error('grpc'), { code: 14 })), undefined);
  assert.equal(errnoCode(new BerthError('not-found', 'x')), undefined);
  assert.equal(errnoCode(null), undefined);
});

test('unlessMissing turns only ENOENT into undefined', async () => {
  assert.equal(await unlessMissing(readFile('/nonexistent/berth', 'utf8')), undefined);
  assert.match((await unlessMissing(readFile('/proc/self/status', 'utf8'))) ?? '', /^Name:/);
  await assert.rejects(unlessMissing(readFile('/proc', 'utf8')), (err: unknown) => errnoCode(err) === 'EISDIR');
});
