// The committed message types (src/cri/gen/ for CRI, src/cri/gen-berth/ for berth's own API) and the
// descriptor the codec encodes with (src/cri/descriptor.json) match what hack/gen-types.sh makes
// from proto/, so handlers cannot type-check against stale shapes nor the daemon speak a stale wire.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const repo = fileURLToPath(new URL('../..', import.meta.url));

async function files(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    out.set(relative(dir, path), await readFile(path, 'utf8'));
  }
  return out;
}

/** Generates `which` into a temp dir and compares it, file by file, with the committed `dir`. */
async function assertFresh(which: 'cri' | 'berth', dir: string): Promise<Map<string, string>> {
  const tmp = await mkdtemp(join(tmpdir(), 'berth-gen-'));
  try {
    await promisify(execFile)('bash', [join(repo, 'hack/gen-types.sh'), which, join(tmp, 'gen')], { cwd: repo });
    const fresh = await files(join(tmp, 'gen'));
    const committed = await files(join(repo, dir));
    const fix = `run bash hack/gen-types.sh ${which}`;
    assert.deepEqual([...committed.keys()].sort(), [...fresh.keys()].sort(), `same files; ${fix}`);
    for (const [name, text] of fresh) assert.equal(committed.get(name), text, `${name} is stale; ${fix}`);
    return fresh;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

test('src/cri/gen is what hack/gen-types.sh generates from proto/runtime/v1/', async () => {
  const fresh = await assertFresh('cri', 'src/cri/gen');
  assert.ok(fresh.size > 100, `the generator made ${fresh.size} files`);
});

test('src/cri/gen-berth is what hack/gen-types.sh generates from proto/berth/v1/', async () => {
  const fresh = await assertFresh('berth', 'src/cri/gen-berth');
  assert.ok(fresh.has('berth/v1/SetPinsRequest.ts'));
});

test('src/cri/descriptor.json is what hack/gen-types.sh generates from proto/', async () => {
  const tmp = await mkdtemp(join(tmpdir(), 'berth-gen-'));
  try {
    await promisify(execFile)('bash', [join(repo, 'hack/gen-types.sh'), 'descriptor', join(tmp, 'descriptor.json')], { cwd: repo });
    const fresh = await readFile(join(tmp, 'descriptor.json'), 'utf8');
    assert.match(fresh, /"runtime\.v1\.RuntimeService": \[/);
    assert.equal(await readFile(join(repo, 'src/cri/descriptor.json'), 'utf8'), fresh, 'src/cri/descriptor.json is stale; run bash hack/gen-types.sh descriptor');
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});
