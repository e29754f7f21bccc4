// The committed types of berth's own API (src/cri/gen-berth/) match what hack/gen-berth-types.sh
// makes from proto/berth/v1/, so the Pins handlers cannot type-check against stale shapes.
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
    if (entry.isFile()) out.set(relative(dir, join(entry.parentPath, entry.name)), await readFile(join(entry.parentPath, entry.name), 'utf8'));
  }
  return out;
}

test('src/cri/gen-berth is what hack/gen-berth-types.sh generates from proto/berth/v1/', async () => {
  const tmp = await mkdtemp(join(tmpdir(), 'berth-gen-'));
  try {
    await promisify(execFile)('bash', [join(repo, 'hack/gen-berth-types.sh'), join(tmp, 'gen')], { cwd: repo });
    const fresh = await files(join(tmp, 'gen'));
    assert.ok(fresh.has('berth/v1/SetPinsRequest.ts'));
    assert.deepEqual(await files(join(repo, 'src/cri/gen-berth')), fresh, 'run bash hack/gen-berth-types.sh');
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});
