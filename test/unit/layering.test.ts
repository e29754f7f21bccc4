// Which room may import which: the capability rooms (image, content, snapshot, util) never import
// the daemon's config, the CRI layer or the entry point, so they stay usable on their own and there
// are no import cycles between config and image.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => join(e.parentPath, e.name));
}

/** Every relative import (static, type-only or dynamic) of a file, as paths under src/. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)'(\.{1,2}\/[^']+)'/g)].map((m) => m[1] as string);
  return specs.map((s) => relative(SRC, resolve(dirname(file), s)));
}

const RULES: Array<{ room: string; mayNot: string[] }> = [
  { room: 'image', mayNot: ['config/', 'cri/', 'main.ts', 'daemon/'] },
  { room: 'content', mayNot: ['config/', 'cri/', 'image/', 'snapshot/', 'main.ts'] },
  { room: 'snapshot', mayNot: ['config/', 'cri/', 'image/', 'main.ts'] },
  { room: 'util', mayNot: ['config/', 'cri/', 'image/', 'snapshot/', 'content/', 'main.ts'] },
];

test('capability rooms do not import the config, the CRI layer or the daemon', () => {
  const offences: string[] = [];
  for (const { room, mayNot } of RULES) {
    for (const file of filesUnder(join(SRC, room))) {
      for (const target of importsOf(file)) {
        if (mayNot.some((p) => target === p || target.startsWith(p))) offences.push(`${relative(SRC, file)} imports ${target}`);
      }
    }
  }
  assert.deepEqual(offences, []);
});
