// Leases keep an image's layers and config through RemoveImage and GC until released, and survive a
// restart of the image service; a damaged lease file is moved aside, not fatal.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { defaultConfig, type BerthConfig } from '../../src/config/config.ts';
import { ImageService } from '../../src/image/service.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { busyboxImage, pushImage } from '../helpers/images.ts';

let registry: TestRegistry;
let base: string;
let config: BerthConfig;
const log = pino({ level: 'silent' });

before(async () => {
  registry = await startRegistry();
  await pushImage(registry.url, 'leases/busybox', 'v1', await busyboxImage());
  base = await mkdtemp(join(tmpdir(), 'berth-leases-'));
  config = { ...defaultConfig(), root: join(base, 'root'), state: join(base, 'state') };
  config.registry = { ...config.registry, plainHttpHosts: [registry.host] };
});
after(async () => {
  await registry?.stop();
  if (base) await rm(base, { recursive: true, force: true });
});

const snapshotCount = async (): Promise<number> =>
  (await readdir(join(config.root, 'snapshots'))).filter((n) => /^[a-f0-9]{64}$/.test(n)).length;

test('a leased image keeps its layers through RemoveImage and restarts until released', async () => {
  const ref = `${registry.host}/leases/busybox:v1`;
  let images = new ImageService(config, log);
  await images.init();
  const id = await images.pull(ref);
  const leased = await images.lease('container/abc', ref);
  assert.equal(leased.id, id);
  assert.ok(leased.ref.includes('@sha256:'), `image ref is a repo digest: ${leased.ref}`);
  assert.ok(leased.lowerDirs.length > 0);
  assert.ok(Array.isArray(leased.config.rootfs.diff_ids));

  await images.remove(ref);
  assert.equal(images.find(ref), undefined, 'the name is gone');
  for (const dir of leased.lowerDirs) await stat(dir);
  await images.close();

  // Startup GC sees the persisted lease too.
  images = new ImageService(config, log);
  await images.init();
  const again = await images.leased('container/abc');
  assert.equal(again?.id, id);
  assert.equal(await snapshotCount(), leased.lowerDirs.length);

  await images.releaseLease('container/abc');
  await images.close();
  images = new ImageService(config, log);
  await images.init();
  assert.equal(await snapshotCount(), 0, 'released layers are collected');
  assert.equal(await images.leased('container/abc'), undefined);
  await images.close();
});

test('leasing an image that is not there is NOT_FOUND; a damaged lease file is moved aside', async () => {
  const images = new ImageService(config, log);
  await images.init();
  await assert.rejects(images.lease('container/x', 'nothere:latest'), (err: Error & { kind?: string }) => err.kind === 'not-found');
  await images.close();
  const dir = join(config.root, 'metadata', 'leases');
  await writeFile(join(dir, 'broken.json'), '{"holder": 3}');
  const again = new ImageService(config, log);
  await again.init();
  assert.ok((await readdir(dir)).includes('broken.json.corrupt'));
  await again.close();
});
