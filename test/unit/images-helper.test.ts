import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import tar, { type Header } from 'tar-stream';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import {
  MEDIA_TYPES,
  bigImage,
  buildImage,
  busyboxImage,
  layerStream,
  pushImage,
  pushIndex,
  type BuiltLayer,
} from '../helpers/images.ts';

type TestContext = { after: (fn: () => Promise<void>) => void };

async function registry(t: TestContext): Promise<TestRegistry> {
  const reg = await startRegistry();
  t.after(() => reg.stop());
  return reg;
}

function sha256(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

function decompressed(layer: BuiltLayer): Readable {
  const raw = layerStream(layer);
  if (layer.compression === 'gzip') return raw.pipe(createGunzip());
  if (layer.compression === 'zstd') return raw.pipe(createZstdDecompress());
  return raw;
}

interface TarEntry {
  header: Header;
  data: Buffer;
}

/** Unpack a layer's tar into memory (test-sized layers only) and check its diffId on the way. */
async function readLayer(layer: BuiltLayer): Promise<TarEntry[]> {
  const hash = createHash('sha256');
  const source = decompressed(layer);
  source.on('data', (chunk: Buffer) => hash.update(chunk));
  const extract = tar.extract();
  source.pipe(extract as unknown as NodeJS.WritableStream);
  const entries: TarEntry[] = [];
  for await (const entry of extract) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    entries.push({ header: entry.header, data: Buffer.concat(chunks) });
  }
  await finished(source);
  assert.equal(`sha256:${hash.digest('hex')}`, layer.diffId, 'diffId is the sha256 of the uncompressed tar');
  return entries;
}

async function getManifest(reg: TestRegistry, repo: string, reference: string, accept: string): Promise<{ bytes: Buffer; digest: string | null; type: string | null }> {
  const res = await fetch(`${reg.url}/v2/${repo}/manifests/${reference}`, { headers: { accept } });
  assert.equal(res.status, 200, `GET manifest ${repo}:${reference}`);
  return { bytes: Buffer.from(await res.arrayBuffer()), digest: res.headers.get('docker-content-digest'), type: res.headers.get('content-type') };
}

async function getBlob(reg: TestRegistry, repo: string, digest: string): Promise<Buffer> {
  const res = await fetch(`${reg.url}/v2/${repo}/blobs/${digest}`);
  assert.equal(res.status, 200, `GET blob ${digest}`);
  return Buffer.from(await res.arrayBuffer());
}

void test('busybox image: real layer, config and Docker manifest, pushed and read back', async (t) => {
  const image = await busyboxImage({ config: { User: 'www', Labels: { fixture: 'busybox' } } });
  assert.equal(image.format, 'docker');
  assert.equal(image.manifest.mediaType, MEDIA_TYPES.docker.manifest);
  const [layer] = image.layers;
  assert.ok(layer?.bytes);
  assert.equal(layer.mediaType, 'application/vnd.docker.image.rootfs.diff.tar.gzip');
  assert.equal(layer.digest, sha256(layer.bytes));
  assert.equal(layer.size, layer.bytes.length);

  const config = image.config.object;
  assert.deepEqual(config.rootfs, { type: 'layers', diff_ids: [layer.diffId] });
  assert.equal(config.architecture, 'amd64');
  assert.equal(config.os, 'linux');
  assert.equal(config.config.User, 'www');
  assert.deepEqual(config.config.Cmd, ['sh']);
  assert.match(config.config.Env?.[0] ?? '', /^PATH=/);
  assert.deepEqual(
    config.history.map((h) => h.empty_layer ?? false),
    [false, true],
  );
  assert.equal(image.config.digest, sha256(image.config.bytes));

  const entries = await readLayer(layer);
  const byName = new Map(entries.map((e) => [e.header.name, e]));
  const busybox = byName.get('bin/busybox');
  assert.ok(busybox);
  assert.deepEqual(busybox.data, readFileSync('/bin/busybox'));
  assert.equal(busybox.header.mode & 0o777, 0o755);
  for (const applet of ['sh', 'ls', 'cat', 'echo', 'sleep', 'top', 'true']) {
    const link = byName.get(`bin/${applet}`);
    assert.equal(link?.header.type, 'symlink', applet);
    assert.equal(link.header.linkname, '/bin/busybox');
  }
  assert.equal(byName.get('tmp/')?.header.mode, 0o1777);
  assert.match(byName.get('etc/passwd')?.data.toString() ?? '', /^www:x:33:33:/m);
  assert.match(byName.get('etc/passwd')?.data.toString() ?? '', /^nobody:x:65534:65534:/m);
  assert.equal(byName.get('etc/hostname')?.data.length, 0);

  // Deterministic: the same spec gives the same digests.
  const again = await busyboxImage({ config: { User: 'www', Labels: { fixture: 'busybox' } } });
  assert.equal(again.manifest.digest, image.manifest.digest);

  const reg = await registry(t);
  const digest = await pushImage(reg.url, 'library/busybox', 'latest', image);
  assert.equal(digest, image.manifest.digest);
  const got = await getManifest(reg, 'library/busybox', 'latest', MEDIA_TYPES.docker.manifest);
  assert.equal(got.digest, image.manifest.digest);
  assert.equal(sha256(got.bytes), image.manifest.digest);
  assert.equal(got.type, MEDIA_TYPES.docker.manifest);
  assert.deepEqual(await getBlob(reg, 'library/busybox', image.config.digest), image.config.bytes);
  assert.deepEqual(await getBlob(reg, 'library/busybox', layer.digest), layer.bytes);
  // A second push finds every blob already there and just re-tags.
  assert.equal(await pushImage(reg.url, 'library/busybox', 'again', image), digest);
});

void test('OCI image with zstd, gzip and uncompressed layers and every file type', async (t) => {
  const image = await buildImage({
    format: 'oci',
    config: { Entrypoint: ['/bin/sh', '-c'], Cmd: ['echo hi'], WorkingDir: '/srv', ExposedPorts: { '80/tcp': {} }, Volumes: { '/data': {} }, Env: [] },
    layers: [
      {
        compression: 'zstd',
        files: [
          { path: '/srv', type: 'dir', mode: 0o750, uid: 33, gid: 33 },
          { path: '/srv/app.txt', content: 'app\n', mode: 0o4755, mtime: new Date('2020-02-02T00:00:00Z') },
          { path: '/srv/hard', type: 'hardlink', linkname: '/srv/app.txt' },
          { path: '/srv/link', type: 'symlink', linkname: '../etc/passwd' },
          { path: '/dev/null2', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 },
          { path: '/dev/loop9', type: 'block', devmajor: 7, devminor: 9 },
          { path: '/srv/pipe', type: 'fifo' },
          { path: '/srv/xattr', content: 'x', pax: { 'SCHILY.xattr.user.berth': 'yes' } },
          { path: `/srv/${'long-name-'.repeat(20)}`, content: 'long' },
        ],
      },
      { compression: 'none', files: [{ path: '/srv/.wh.pipe' }] },
      { compression: 'gzip', files: [{ path: '/empty', content: Buffer.alloc(0) }] },
    ],
  });
  assert.deepEqual(
    image.layers.map((l) => l.mediaType),
    [MEDIA_TYPES.oci.layer.zstd, MEDIA_TYPES.oci.layer.none, MEDIA_TYPES.oci.layer.gzip],
  );
  assert.deepEqual(image.config.object.config.Env, []);
  assert.deepEqual(image.config.object.history.filter((h) => h.empty_layer).length, 2);
  const [zstd, none] = image.layers;
  assert.ok(zstd && none);
  const entries = await readLayer(zstd);
  const byName = new Map(entries.map((e) => [e.header.name, e.header]));
  assert.equal(byName.get('srv/')?.uid, 33);
  assert.equal(byName.get('srv/app.txt')?.mode, 0o4755);
  assert.equal(byName.get('srv/app.txt')?.mtime.toISOString(), '2020-02-02T00:00:00.000Z');
  assert.equal(byName.get('srv/hard')?.type, 'link');
  assert.equal(byName.get('srv/hard')?.linkname, 'srv/app.txt');
  assert.equal(byName.get('srv/link')?.linkname, '../etc/passwd');
  assert.deepEqual([byName.get('dev/null2')?.type, byName.get('dev/null2')?.devmajor, byName.get('dev/null2')?.devminor], ['character-device', 1, 3]);
  assert.equal(byName.get('dev/loop9')?.type, 'block-device');
  assert.equal(byName.get('srv/pipe')?.type, 'fifo');
  assert.deepEqual(byName.get('srv/xattr')?.pax, { path: 'srv/xattr', 'SCHILY.xattr.user.berth': 'yes' });
  assert.ok(byName.has(`srv/${'long-name-'.repeat(20)}`));
  assert.deepEqual((await readLayer(none)).map((e) => e.header.name), ['srv/.wh.pipe']);

  const reg = await registry(t);
  await pushImage(reg.url, 'fixtures/oci', 'v1', image);
  const got = await getManifest(reg, 'fixtures/oci', 'v1', MEDIA_TYPES.oci.manifest);
  assert.equal(got.digest, image.manifest.digest);
  assert.deepEqual(got.bytes, image.manifest.bytes);
});

void test('pushIndex publishes a multi-platform index whose children resolve by digest', async (t) => {
  const amd64 = await busyboxImage({ format: 'oci' });
  const arm64 = await busyboxImage({ format: 'oci', architecture: 'arm64', variant: 'v8' });
  assert.notEqual(amd64.manifest.digest, arm64.manifest.digest);
  const reg = await registry(t);
  const index = await pushIndex(reg.url, 'multi/busybox', 'latest', [
    { image: amd64, platform: { os: 'linux', architecture: 'amd64' } },
    { image: arm64, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
  ]);
  assert.equal(index.mediaType, MEDIA_TYPES.oci.index);
  const got = await getManifest(reg, 'multi/busybox', 'latest', MEDIA_TYPES.oci.index);
  assert.equal(got.digest, index.digest);
  const parsed = JSON.parse(got.bytes.toString()) as typeof index.object;
  assert.deepEqual(
    parsed.manifests.map((m) => [m.digest, m.platform?.architecture]),
    [
      [amd64.manifest.digest, 'amd64'],
      [arm64.manifest.digest, 'arm64'],
    ],
  );
  const child = await getManifest(reg, 'multi/busybox', arm64.manifest.digest, MEDIA_TYPES.oci.manifest);
  assert.deepEqual(child.bytes, arm64.manifest.bytes);

  // The Docker flavour: a manifest list over Docker manifests.
  const docker = await busyboxImage();
  const list = await pushIndex(reg.url, 'multi/docker', 'latest', [{ image: docker, platform: { os: 'linux', architecture: 'amd64' } }], 'docker');
  const gotList = await getManifest(reg, 'multi/docker', 'latest', MEDIA_TYPES.docker.index);
  assert.equal(gotList.digest, list.digest);
  assert.equal(gotList.type, MEDIA_TYPES.docker.index);
});

void test('bigImage at a tiny scale: 7 streamed layers with a whiteout and an opaque dir, pushed', async (t) => {
  const image = await bigImage({ scale: 0.01 });
  t.after(() => image.cleanup());
  assert.equal(image.layers.length, 7);
  assert.equal(image.config.object.rootfs.diff_ids.length, 7);
  for (const layer of image.layers) {
    assert.ok(layer.file, 'big layers live on disk');
    assert.equal(layer.bytes, undefined);
    assert.equal((await stat(layer.file)).size, layer.size);
  }
  const top = image.layers[6];
  assert.ok(top);
  const names = (await readLayer(top)).map((e) => e.header.name);
  assert.ok(names.includes('usr/share/docs/d0/.wh.f0.txt'), 'whiteout');
  assert.ok(names.includes('usr/share/libs/d0/.wh..wh..opq'), 'opaque marker');
  const libs = await readLayer(image.layers[3] as BuiltLayer);
  assert.ok(libs.some((e) => e.header.name === 'usr/share/libs/d0/f0.txt'), 'the opaque dir hides real lower content');
  assert.ok(libs.some((e) => e.header.name.startsWith('opt/libs/blob') && e.data.length > 4096));
  assert.ok(image.entries > 100);

  // Same options give the same digests (seeded content); a different seed changes them.
  const again = await bigImage({ scale: 0.01 });
  t.after(() => again.cleanup());
  assert.equal(again.manifest.digest, image.manifest.digest);

  const reg = await registry(t);
  await pushImage(reg.url, 'bench/big', 'tiny', image);
  const got = await getManifest(reg, 'bench/big', 'tiny', MEDIA_TYPES.docker.manifest);
  assert.equal(got.digest, image.manifest.digest);
  const blob = await getBlob(reg, 'bench/big', image.layers[1]?.digest ?? '');
  assert.equal(sha256(blob), image.layers[1]?.digest);

  const dir = image.dir;
  await image.cleanup();
  await assert.rejects(access(dir));
});

void test('bigImage with zstd defaults to OCI', async (t) => {
  const image = await bigImage({ scale: 0.002, compression: 'zstd', seed: 'other' });
  t.after(() => image.cleanup());
  assert.equal(image.format, 'oci');
  assert.ok(image.layers.every((l) => l.mediaType === MEDIA_TYPES.oci.layer.zstd));
  await readLayer(image.layers[2] as BuiltLayer);
  await assert.rejects(buildImage({ layers: image.layers.map((l) => ({ ...l })), format: 'docker' }), /no zstd/);
});
