// The committed CRI message types (src/cri/gen/) match what hack/gen-cri-types.sh makes from
// proto/, so a proto change cannot leave handlers type-checked against stale shapes.
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

test('src/cri/gen is what hack/gen-cri-types.sh generates from proto/', async () => {
  const tmp = await mkdtemp(join(tmpdir(), 'berth-gen-'));
  try {
    await promisify(execFile)('bash', [join(repo, 'hack/gen-cri-types.sh'), join(tmp, 'gen')], { cwd: repo });
    const fresh = await files(join(tmp, 'gen'));
    const committed = await files(join(repo, 'src/cri/gen'));
    assert.ok(fresh.size > 100, `the generator made ${fresh.size} files`);
    assert.deepEqual([...committed.keys()].sort(), [...fresh.keys()].sort(), 'same files; run bash hack/gen-cri-types.sh');
    for (const [name, text] of fresh) assert.equal(committed.get(name), text, `${name} is stale; run bash hack/gen-cri-types.sh`);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});
