// berthd must not load the controller's or installer's code: its import graph (from bin/berthd.js) holds
// no src/controller/ or src/installer/ file and no @kubernetes/* package. The controller's own graph may use the
// daemon's modules (the CRI client, reference parsing), never the other way round. Nor does it load a
// .proto parser: it encodes with src/cri/codec.ts from the descriptor compiled ahead of time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('../..', import.meta.url));
// Type-only imports are erased before the code runs, so they are not part of the graph.
const IMPORT_RE = /(?:^|\n)\s*(?:import|export)\s(?!type\s)[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
const STATIC_IMPORT_RE = /(?:^|\n)\s*(?:import|export)\s(?!type\s)[^'"]*?from\s+['"]([^'"]+)['"]/g;

/** What `entry` imports, transitively; with `atStart`, only what loads before any code runs (no import()). */
async function graph(entry: string, atStart = false): Promise<{ files: Set<string>; packages: Set<string> }> {
  const files = new Set<string>();
  const packages = new Set<string>();
  const todo = [resolve(repo, entry)];
  while (todo.length > 0) {
    const file = todo.pop() as string;
    if (files.has(file)) continue;
    files.add(file);
    const text = await readFile(file, 'utf8');
    for (const m of text.matchAll(atStart ? STATIC_IMPORT_RE : IMPORT_RE)) {
      const spec = m[1] ?? m[2] ?? '';
      if (spec.startsWith('.')) todo.push(resolve(dirname(file), spec));
      else if (!spec.startsWith('node:')) packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : (spec.split('/')[0] ?? spec));
    }
  }
  return { files, packages };
}

test('berthd loads no controller or installer code and no Kubernetes client', async () => {
  const { files, packages } = await graph('bin/berthd.js');
  assert.ok(files.size > 20, `walked ${files.size} files`);
  const controller = [...files].map((f) => relative(repo, f)).filter((f) => f.startsWith('src/controller/') || f.startsWith('src/installer/'));
  assert.deepEqual(controller, []);
  assert.deepEqual([...packages].filter((p) => p.startsWith('@kubernetes/')), []);
});

test('berthd and its CRI client load no .proto parser or protobuf runtime', async () => {
  for (const entry of ['bin/berthd.js', 'src/client/cri-client.ts']) {
    const { packages } = await graph(entry);
    assert.ok(packages.has('@grpc/grpc-js'), `${entry}: the walk sees grpc-js`);
    assert.deepEqual([...packages].filter((p) => p === '@grpc/proto-loader' || p.startsWith('protobufjs')), [], entry);
  }
});

// Loaded when first needed (measured: ~1 MB of idle RSS), yet still part of berthd.
test('berthd starts without the streaming session code (ws, SPDY); the first upgrade loads it', async () => {
  const start = await graph('src/main.ts', true);
  const all = await graph('src/main.ts');
  for (const file of ['src/streaming/sessions.ts', 'src/streaming/spdy/session.ts']) {
    assert.ok(!start.files.has(resolve(repo, file)), `${file} is not loaded at start`);
    assert.ok(all.files.has(resolve(repo, file)), `${file} is reachable`);
  }
  assert.ok(!start.packages.has('ws') && all.packages.has('ws'), 'ws loads with the sessions');
});

// An ES import of node:http reads its WebSocket export, which loads Node's bundled undici: berthd
// takes node:http with process.getBuiltinModule instead.
test("loading berthd's modules does not load Node's bundled undici", async () => {
  const script = `await import(${JSON.stringify(resolve(repo, 'src/main.ts'))}); console.log(JSON.stringify(process.moduleLoadList));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: repo });
  const loaded = JSON.parse(stdout) as string[];
  assert.ok(loaded.includes('NativeModule http2'), 'the list shows what grpc-js loads');
  assert.deepEqual(loaded.filter((m) => m.includes('undici')), []);
});

test('the installer loads no controller code and no Kubernetes client', async () => {
  const { files, packages } = await graph('bin/berth-install.js');
  assert.ok([...files].some((f) => relative(repo, f).startsWith('src/installer/')), 'the walk reaches src/installer/');
  assert.deepEqual([...files].map((f) => relative(repo, f)).filter((f) => f.startsWith('src/controller/')), []);
  assert.deepEqual([...packages].filter((p) => p.startsWith('@kubernetes/')), []);
});

test('the controller graph does include client-node (the walk can see it)', async () => {
  const { packages } = await graph('bin/berth-controller.js');
  assert.ok(packages.has('@kubernetes/client-node'), [...packages].join(', '));
});
