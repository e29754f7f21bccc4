// Pulls under faults, with a proxy between berthd and a real registry: a daemon killed mid-pull,
// concurrent pulls sharing one download, a corrupt blob, a registry that demands credentials,
// and a full disk.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, rm, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { startProxy, type ProxyControls } from '../helpers/proxy.ts';
import { startDaemon, type TestDaemon } from '../helpers/daemon.ts';
import { bigImage, busyboxImage, pushImage } from '../helpers/images.ts';
import type { Image } from '../../src/cri/types.ts';

async function leftovers(d: TestDaemon): Promise<string[]> {
  const found: string[] = [];
  const ingest = await readdir(join(d.root, 'content', 'ingest')).catch(() => []);
  found.push(...ingest.map((f) => `ingest/${f}`));
  const snaps = await readdir(join(d.root, 'snapshots')).catch(() => []);
  found.push(...snaps.filter((f) => f.startsWith('.')).map((f) => `snapshots/${f}`));
  return found;
}

/** A registry, the fault proxy in front of it, and a daemon; all torn down after the test. */
async function proxiedDaemon(t: TestContext): Promise<{ registry: TestRegistry; proxy: ProxyControls; d: TestDaemon }> {
  const registry = await startRegistry();
  const proxy = await startProxy(registry.port);
  const d = await startDaemon();
  t.after(async () => {
    await d.dispose();
    await proxy.close();
    await registry.stop();
  });
  return { registry, proxy, d };
}

test('a daemon killed mid-pull shows no half image after restart, and the next pull finishes', async (t) => {
  const registry = await startRegistry();
  const proxy = await startProxy(registry.port);
  t.after(async () => {
    await proxy.close();
    await registry.stop();
  });
  const img = await busyboxImage({ layers: [{ files: [{ path: 'big.bin', content: Buffer.alloc(512 * 1024, 7) }] }] });
  await pushImage(registry.url, 'test/interrupted', 'v1', img);
  const ref = `${proxy.host}/test/interrupted:v1`;

  proxy.stallBlobsAfter = 1000;
  const first = await startDaemon();
  const pulling = first.client.call('image', 'PullImage', { image: { image: ref } }).catch((err: Error) => err);
  await proxy.stalled;
  assert.equal(await first.stop('SIGKILL'), 'SIGKILL');
  assert.ok((await pulling) instanceof Error, 'the pull did not complete');

  proxy.stallBlobsAfter = undefined;
  const second = await startDaemon({ root: first.root });
  t.after(async () => {
    await second.dispose();
    await first.dispose();
  });
  const { images } = await second.client.call<{ images: Image[] }>('image', 'ListImages', {});
  assert.deepEqual(images, [], 'no half image is visible');
  assert.deepEqual(await leftovers(second), [], 'temp files were swept at start');
  const res = await second.client.call<{ image_ref: string }>('image', 'PullImage', { image: { image: ref } });
  assert.equal(res.image_ref, img.config.digest);
});

// The timeout is a hang guard, not a measurement: a daemon that waited for the stalled download
// would sit out the registry client's 120 s idle timeout first.
test('SIGTERM during a stalled pull still shuts down cleanly', { timeout: 60_000 }, async (t) => {
  const { registry, proxy, d } = await proxiedDaemon(t);
  const img = await busyboxImage({ layers: [{ files: [{ path: 'stall.bin', content: Buffer.alloc(256 * 1024, 1) }] }] });
  await pushImage(registry.url, 'test/stalled', 'v1', img);
  proxy.stallBlobsAfter = 100;
  const pulling = d.client.call('image', 'PullImage', { image: { image: `${proxy.host}/test/stalled:v1` } }).catch((err: Error) => err);
  await proxy.stalled;
  assert.equal(await d.stop('SIGTERM'), 0);
  assert.ok((await pulling) instanceof Error, 'the cut-off pull reports an error');
});

test('concurrent pulls of one image share one download per blob', async (t) => {
  const { registry, proxy, d } = await proxiedDaemon(t);
  const img = await busyboxImage({ layers: [{ files: [{ path: 'x', content: 'x' }] }] });
  await pushImage(registry.url, 'test/concurrent', 'v1', img);
  await pushImage(registry.url, 'test/concurrent', 'v2', img);
  const ids = await Promise.all([
    ...Array.from({ length: 4 }, () => d.client.call<{ image_ref: string }>('image', 'PullImage', { image: { image: `${proxy.host}/test/concurrent:v1` } })),
    d.client.call<{ image_ref: string }>('image', 'PullImage', { image: { image: `${proxy.host}/test/concurrent:v2` } }),
  ]);
  assert.deepEqual(new Set(ids.map((r) => r.image_ref)), new Set([img.config.digest]));
  for (const layer of img.layers) {
    const gets = proxy.requests.filter((p) => p.endsWith(`/blobs/${layer.digest}`));
    assert.equal(gets.length, 1, `layer ${layer.digest} fetched once, got ${gets.length}`);
  }
});

test('a corrupt blob fails the pull naming both digests and leaves nothing behind', async (t) => {
  const { registry, proxy, d } = await proxiedDaemon(t);
  const img = await busyboxImage();
  await pushImage(registry.url, 'test/corrupt', 'v1', img);
  proxy.corruptBlobs = true;
  await assert.rejects(d.client.call('image', 'PullImage', { image: { image: `${proxy.host}/test/corrupt:v1` } }), (err: { details: string }) => {
    assert.match(err.details, /sha256:[a-f0-9]{64}.*sha256:[a-f0-9]{64}/s);
    return true;
  });
  const { images } = await d.client.call<{ images: Image[] }>('image', 'ListImages', {});
  assert.deepEqual(images, []);
  assert.deepEqual(await leftovers(d), []);
  const snaps = (await readdir(join(d.root, 'snapshots'))).filter((f) => /^[a-f0-9]{64}$/.test(f));
  const blobs = await readdir(join(d.root, 'content', 'blobs', 'sha256'));
  assert.ok(!blobs.includes((img.layers[0]?.digest ?? '').slice(7)), 'corrupt layer blob not stored');
  assert.deepEqual(snaps.filter((s) => s === (img.layers[0]?.diffId ?? '').slice(7)), [], 'no snapshot from corrupt data');
});

test('a registry that refuses the credentials is named in the error', async (t) => {
  const registry = await startRegistry({ basicAuth: { user: 'alice', password: 's3cret' } });
  t.after(() => registry.stop());
  const img = await busyboxImage();
  const auth = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`;
  await pushImage(registry.url, 'test/private', 'v1', img, { authorization: auth });

  const d = await startDaemon();
  t.after(() => d.dispose());
  const ref = `${registry.host}/test/private:v1`;
  await assert.rejects(d.client.call('image', 'PullImage', { image: { image: ref } }), (err: { code: number; details: string }) => {
    assert.ok([GrpcStatus.UNAUTHENTICATED, GrpcStatus.PERMISSION_DENIED].includes(err.code), GrpcStatus[err.code]);
    assert.match(err.details, new RegExp(registry.host.replace(/\./g, '\\.')));
    return true;
  });
  await assert.rejects(
    d.client.call('image', 'PullImage', { image: { image: ref }, auth: { username: 'alice', password: 'wrong' } }),
    (err: { code: number; details: string }) => {
      assert.ok([GrpcStatus.UNAUTHENTICATED, GrpcStatus.PERMISSION_DENIED].includes(err.code), GrpcStatus[err.code]);
      return true;
    },
  );
  const ok = await d.client.call<{ image_ref: string }>('image', 'PullImage', { image: { image: ref }, auth: { username: 'alice', password: 's3cret' } });
  assert.equal(ok.image_ref, img.config.digest);
  const viaAuthField = await d.client.call<{ image_ref: string }>('image', 'PullImage', {
    image: { image: ref },
    auth: { auth: Buffer.from('alice:s3cret').toString('base64') },
  });
  assert.equal(viaAuthField.image_ref, img.config.digest);
});

test('a full disk fails the pull with RESOURCE_EXHAUSTED, cleans temp files, and the daemon keeps serving', async (t) => {
  const registry = await startRegistry();
  const mnt = await mkdtemp(join(tmpdir(), 'berth-tinyfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mnt]);
  t.after(async () => {
    execFileSync('umount', ['-l', mnt]);
    await rm(mnt, { recursive: true, force: true });
    await registry.stop();
  });
  const img = await bigImage({ scale: 0.08, seed: 'full-disk' });
  t.after(() => img.cleanup());
  await pushImage(registry.url, 'test/toobig', 'v1', img);
  await mkdir(join(mnt, 'root'));
  await writeFile(join(mnt, 'marker'), '');
  const d = await startDaemon({ root: join(mnt, 'root') });
  t.after(() => d.dispose());
  await assert.rejects(d.client.call('image', 'PullImage', { image: { image: `${registry.host}/test/toobig:v1` } }), (err: { code: number; details: string }) => {
    assert.equal(err.code, GrpcStatus.RESOURCE_EXHAUSTED, `${GrpcStatus[err.code]}: ${err.details}`);
    assert.match(err.details, /disk|space|ENOSPC/i);
    return true;
  });
  assert.deepEqual(await leftovers(d), []);
  const v = await d.client.call<{ runtime_name: string }>('runtime', 'Version', {});
  assert.equal(v.runtime_name, 'berth');
});
