// Pulls under faults, with a proxy between berthd and a real registry: a daemon killed mid-pull,
// concurrent pulls sharing one download, a corrupt blob, a registry that demands credentials,
// and a full disk.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { access, mkdtemp, readdir, rm, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { startProxy, type ProxyControls } from '../helpers/proxy.ts';
import { startDaemon, type TestDaemon } from '../helpers/daemon.ts';
import { bigImage, busyboxImage, pushImage } from '../helpers/images.ts';
import { until } from '../helpers/poll.ts';
import type { Image__Output as Image } from '../../src/cri/gen/runtime/v1/Image.ts';
import { ROOT_ONLY } from '../helpers/root.ts';

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

test('a daemon killed mid-pull shows no half image after restart, and the next pull finishes', ROOT_ONLY, async (t) => {
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
test('SIGTERM during a stalled pull still shuts down cleanly', { ...ROOT_ONLY, timeout: 60_000 }, async (t) => {
  const { registry, proxy, d } = await proxiedDaemon(t);
  const img = await busyboxImage({ layers: [{ files: [{ path: 'stall.bin', content: Buffer.alloc(256 * 1024, 1) }] }] });
  await pushImage(registry.url, 'test/stalled', 'v1', img);
  proxy.stallBlobsAfter = 100;
  const pulling = d.client.call('image', 'PullImage', { image: { image: `${proxy.host}/test/stalled:v1` } }).catch((err: Error) => err);
  await proxy.stalled;
  assert.equal(await d.stop('SIGTERM'), 0);
  assert.ok((await pulling) instanceof Error, 'the cut-off pull reports an error');
});

/** Both pulls have their configs and have asked for their layers: only then does the proxy let layers through. */
async function bothPullsAtLayers(d: TestDaemon, names: string[]): Promise<void> {
  await until('both pulls to reach their layers', () =>
    names.every((name) => d.logs().split('\n').some((l) => l.includes('"manifest and config fetched"') && l.includes(`"image":"${name}"`))),
  );
}

test('concurrent pulls of different images that share layers download each blob once', ROOT_ONLY, async (t) => {
  const { registry, proxy, d } = await proxiedDaemon(t);
  const shared = { files: [{ path: 'shared/x', content: 'x' }] };
  const a = await busyboxImage({ layers: [shared], config: { Labels: { which: 'a' } } });
  const b = await busyboxImage({ layers: [shared], config: { Labels: { which: 'b' } } });
  assert.deepEqual(a.layers.map((l) => l.digest), b.layers.map((l) => l.digest), 'the fixture shares every layer blob');
  await pushImage(registry.url, 'test/share-a', 'v1', a);
  await pushImage(registry.url, 'test/share-b', 'v1', b);
  const release = proxy.hold(a.layers.map((l) => l.digest));
  const pulls = [a, b].map((img, i) =>
    d.client.call<{ image_ref: string }>('image', 'PullImage', { image: { image: `${proxy.host}/test/share-${'ab'[i]}:v1` } }),
  );
  await bothPullsAtLayers(d, [`${proxy.host}/test/share-a`, `${proxy.host}/test/share-b`]);
  release();
  const ids = await Promise.all(pulls);
  assert.deepEqual(ids.map((r) => r.image_ref), [a.config.digest, b.config.digest]);
  for (const layer of a.layers) assert.equal(proxy.blobGets(layer.digest), 1, `layer ${layer.digest} fetched once`);
});

test('concurrent pulls of one reference are one pull', ROOT_ONLY, async (t) => {
  const { registry, proxy, d } = await proxiedDaemon(t);
  const img = await busyboxImage({ layers: [{ files: [{ path: 'x', content: 'x' }] }] });
  await pushImage(registry.url, 'test/concurrent', 'v1', img);
  const release = proxy.hold(img.layers.map((l) => l.digest));
  const pulls = Array.from({ length: 4 }, () => d.client.call<{ image_ref: string }>('image', 'PullImage', { image: { image: `${proxy.host}/test/concurrent:v1` } }));
  await until('the layers to be requested', () => img.layers.every((l) => proxy.requests.some((p) => p.endsWith(`/blobs/${l.digest}`))));
  release();
  const ids = await Promise.all(pulls);
  assert.deepEqual(new Set(ids.map((r) => r.image_ref)), new Set([img.config.digest]));
  assert.equal(proxy.requests.filter((p) => p.includes('/manifests/')).length, 1, 'one manifest request');
  for (const layer of img.layers) assert.equal(proxy.blobGets(layer.digest), 1, `layer ${layer.digest} fetched once`);
});

test('layers that differ only in compression share the unpack but each blob is stored', ROOT_ONLY, async (t) => {
  const { registry, proxy, d } = await proxiedDaemon(t);
  const files = [{ path: 'same/tar', content: 'same bytes, two compressions' }];
  const gz = await busyboxImage({ layers: [{ files, compression: 'gzip' }], format: 'oci', config: { Labels: { c: 'gzip' } } });
  const zst = await busyboxImage({ layers: [{ files, compression: 'zstd' }], format: 'oci', config: { Labels: { c: 'zstd' } } });
  const [gzTop, zstTop] = [gz.layers[1], zst.layers[1]];
  assert.ok(gzTop && zstTop);
  assert.equal(gzTop.diffId, zstTop.diffId, 'same uncompressed tar');
  assert.notEqual(gzTop.digest, zstTop.digest, 'different blobs');
  await pushImage(registry.url, 'test/gz', 'v1', gz);
  await pushImage(registry.url, 'test/zst', 'v1', zst);
  const release = proxy.hold([...gz.layers, ...zst.layers].map((l) => l.digest));
  const pulls = [
    d.client.call<{ image_ref: string }>('image', 'PullImage', { image: { image: `${proxy.host}/test/gz:v1` } }),
    d.client.call<{ image_ref: string }>('image', 'PullImage', { image: { image: `${proxy.host}/test/zst:v1` } }),
  ];
  await bothPullsAtLayers(d, [`${proxy.host}/test/gz`, `${proxy.host}/test/zst`]);
  release();
  await Promise.all(pulls);
  for (const layer of [gzTop, zstTop]) {
    await access(join(d.root, 'content', 'blobs', 'sha256', layer.digest.slice('sha256:'.length)));
    assert.equal(proxy.blobGets(layer.digest), 1, `blob ${layer.digest} fetched once`);
  }
  const snaps = (await readdir(join(d.root, 'snapshots'))).filter((f) => /^[a-f0-9]{64}$/.test(f));
  assert.equal(snaps.length, 2, 'one snapshot per chain ID: base and the shared top layer');
});

test('a pull whose client cancels stops fetching, leaves no temp files, and can be pulled again', ROOT_ONLY, async (t) => {
  const { registry, proxy, d } = await proxiedDaemon(t);
  const img = await busyboxImage({ layers: [{ files: [{ path: 'c.bin', content: Buffer.alloc(256 * 1024, 3) }] }] });
  await pushImage(registry.url, 'test/cancelled', 'v1', img);
  const ref = `${proxy.host}/test/cancelled:v1`;
  proxy.stallBlobsAfter = 100;
  const ac = new AbortController();
  const pulling = d.client.call('image', 'PullImage', { image: { image: ref } }, { signal: ac.signal }).catch((err: { code: number }) => err);
  await proxy.stalled;
  ac.abort();
  assert.equal(((await pulling) as { code: number }).code, GrpcStatus.CANCELLED);
  await until('the daemon to hang up on the stalled downloads', () => proxy.openResponses() === 0);
  await until('the temp files to be removed', async () => (await leftovers(d)).length === 0);
  await until('the cancel to be logged', () => /"code":"CANCELLED"/.test(d.logs()));
  proxy.stallBlobsAfter = undefined;
  const res = await d.client.call<{ image_ref: string }>('image', 'PullImage', { image: { image: ref } });
  assert.equal(res.image_ref, img.config.digest);
});

test('a pull whose deadline passes stops fetching and leaves no temp files', ROOT_ONLY, async (t) => {
  const { registry, proxy, d } = await proxiedDaemon(t);
  const img = await busyboxImage({ layers: [{ files: [{ path: 'd.bin', content: Buffer.alloc(256 * 1024, 4) }] }] });
  await pushImage(registry.url, 'test/deadline', 'v1', img);
  proxy.stallBlobsAfter = 100;
  const err = await d.client
    .call('image', 'PullImage', { image: { image: `${proxy.host}/test/deadline:v1` } }, { timeoutMs: 3000 })
    .catch((e: { code: number }) => e);
  assert.equal((err as { code: number }).code, GrpcStatus.DEADLINE_EXCEEDED);
  await until('the daemon to hang up on the stalled downloads', () => proxy.openResponses() === 0);
  await until('the temp files to be removed', async () => (await leftovers(d)).length === 0);
});

test('a shared pull goes on while one of its callers still waits', ROOT_ONLY, async (t) => {
  const { registry, proxy, d } = await proxiedDaemon(t);
  const img = await busyboxImage({ layers: [{ files: [{ path: 's.bin', content: 'shared pull' }] }] });
  await pushImage(registry.url, 'test/half-cancelled', 'v1', img);
  const ref = `${proxy.host}/test/half-cancelled:v1`;
  const release = proxy.hold(img.layers.map((l) => l.digest));
  const ac = new AbortController();
  const leaving = d.client.call('image', 'PullImage', { image: { image: ref } }, { signal: ac.signal }).catch((err: { code: number }) => err);
  const staying = d.client.call<{ image_ref: string }>('image', 'PullImage', { image: { image: ref } });
  await until('the layers to be requested', () => img.layers.every((l) => proxy.requests.some((p) => p.endsWith(`/blobs/${l.digest}`))));
  ac.abort();
  assert.equal(((await leaving) as { code: number }).code, GrpcStatus.CANCELLED);
  release();
  assert.equal((await staying).image_ref, img.config.digest);
  for (const layer of img.layers) assert.equal(proxy.blobGets(layer.digest), 1, `layer ${layer.digest} fetched once`);
});

test('a corrupt blob fails the pull naming both digests and leaves nothing behind', ROOT_ONLY, async (t) => {
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

test('a registry that refuses the credentials is named in the error', ROOT_ONLY, async (t) => {
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

test('a full disk fails the pull with RESOURCE_EXHAUSTED, cleans temp files, and the daemon keeps serving', ROOT_ONLY, async (t) => {
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
