// The CRI ImageService end to end: a real berthd pulls images a real registry serves, through
// mirrors, and answers ListImages / ImageStatus / RemoveImage / ImageFsInfo / StreamImages.
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, lstat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { startRegistry, freePort, type TestRegistry } from '../helpers/registry.ts';
import { startDaemon, type TestDaemon } from '../helpers/daemon.ts';
import { busyboxImage, pushImage, pushIndex, type BuiltImage } from '../helpers/images.ts';
import type { Image__Output as Image } from '../../src/cri/gen/runtime/v1/Image.ts';
import { ROOT_ONLY } from '../helpers/root.ts';

interface StatusRes {
  image: Image | null;
  info: Record<string, string>;
}

const grpcCode = (code: number, re: RegExp) => (err: { code: number; details: string }) => {
  assert.equal(err.code, code, `expected ${GrpcStatus[code]}, got ${GrpcStatus[err.code]}: ${err.details}`);
  assert.match(err.details, re);
  return true;
};

async function listSnapshots(d: TestDaemon): Promise<string[]> {
  return (await readdir(join(d.root, 'snapshots'))).filter((n) => /^[a-f0-9]{64}$/.test(n));
}

async function listBlobs(d: TestDaemon): Promise<string[]> {
  return (await readdir(join(d.root, 'content', 'blobs', 'sha256'))).map((h) => `sha256:${h}`);
}

describe('image service', ROOT_ONLY, () => {
  let registry: TestRegistry;
  let daemon: TestDaemon;
  let busybox: BuiltImage;
  let busyboxDigest: string;

  // One registry for the group; a fresh daemon (empty store) per test, so no test depends on what
  // another pulled or on the order they run in.
  before(async () => {
    registry = await startRegistry();
    busybox = await busyboxImage();
    busyboxDigest = await pushImage(registry.url, 'library/busybox', 'latest', busybox);
    await pushImage(registry.url, 'library/busybox', '1.36', busybox);
  });
  after(async () => {
    await registry?.stop();
  });
  beforeEach(async () => {
    daemon = await startDaemon({
      config: [
        '[registry.hosts."docker.io"]',
        `mirrors = ["http://${registry.host}"]`,
        'skip_upstream = true',
        '[registry.hosts."registry.k8s.io"]',
        `mirrors = ["http://localhost:${registry.port}"]`,
        'skip_upstream = true',
        // The index test picks linux/amd64 whatever the host is.
        '[image]',
        'platform = "linux/amd64"',
      ].join('\n'),
    });
  });
  afterEach(async () => {
    await daemon?.dispose();
  });

  test('pull by short name through the docker.io mirror, then list and inspect it every way', async () => {
    const pulled = await daemon.client.call<{ image_ref: string }>('image', 'PullImage', { image: { image: 'busybox' } });
    assert.equal(pulled.image_ref, busybox.config.digest, 'image ID is the config digest');

    const { images } = await daemon.client.call<{ images: Image[] }>('image', 'ListImages', {});
    const img = images.find((i) => i.id === busybox.config.digest);
    assert.ok(img, 'listed');
    assert.deepEqual(img.repo_tags, ['docker.io/library/busybox:latest']);
    assert.deepEqual(img.repo_digests, [`docker.io/library/busybox@${busyboxDigest}`]);
    const expectedSize = busybox.config.size + busybox.layers.reduce((s, l) => s + l.size, 0);
    assert.equal(img.size, expectedSize);
    assert.equal(img.uid?.value, undefined);

    const hex = busybox.config.digest.slice(7);
    for (const name of [
      'busybox',
      'busybox:latest',
      'docker.io/library/busybox:latest',
      `busybox@${busyboxDigest}`,
      busybox.config.digest,
      hex,
      hex.slice(0, 12),
    ]) {
      const st = await daemon.client.call<StatusRes>('image', 'ImageStatus', { image: { image: name } });
      assert.equal(st.image?.id, busybox.config.digest, `ImageStatus(${name})`);
    }

    const verbose = await daemon.client.call<StatusRes>('image', 'ImageStatus', { image: { image: 'busybox' }, verbose: true });
    const info = JSON.parse(verbose.info.info ?? '{}') as { imageSpec: { config: { Cmd: string[] }; rootfs: { diff_ids: string[] } } };
    assert.deepEqual(info.imageSpec.config.Cmd, ['sh']);
    assert.deepEqual(info.imageSpec.rootfs.diff_ids, busybox.layers.map((l) => l.diffId));

    // The layer is unpacked once, under its chain ID (= diff ID for a bottom layer).
    const snap = join(daemon.root, 'snapshots', (busybox.layers[0]?.diffId ?? '').slice(7), 'fs');
    assert.ok((await lstat(join(snap, 'bin', 'busybox'))).isFile());
    assert.equal(await readFile(join(snap, 'etc', 'passwd'), 'utf8').then((s) => s.split('\n')[0]), 'root:x:0:0:root:/root:/bin/sh');
    assert.equal((await lstat(join(snap, 'tmp'))).mode & 0o7777, 0o1777);

    const streamed = await daemon.client.stream<{ images: Image[] }>('image', 'StreamImages', {});
    assert.deepEqual(streamed.flatMap((m) => m.images).map((i) => i.id).sort(), images.map((i) => i.id).sort());

    const filtered = await daemon.client.call<{ images: Image[] }>('image', 'ListImages', { filter: { image: { image: 'busybox:latest' } } });
    assert.deepEqual(filtered.images.map((i) => i.id), [busybox.config.digest]);
    const byRepo = await daemon.client.call<{ images: Image[] }>('image', 'ListImages', { filter: { image: { image: 'docker.io/library/busybox' } } });
    assert.deepEqual(byRepo.images.map((i) => i.id), [busybox.config.digest], 'a bare repository matches its tagged images');
    const none = await daemon.client.call<{ images: Image[] }>('image', 'ListImages', { filter: { image: { image: 'busybox:nope' } } });
    assert.deepEqual(none.images, []);
  });

  test('uid and username come from the config User; OCI zstd and plain layers unpack', async () => {
    const byUid = await busyboxImage({ config: { User: '1002:1002' }, format: 'oci' });
    const byName = await busyboxImage({
      config: { User: 'www' },
      format: 'oci',
      layers: [
        { files: [{ path: 'zstd.txt', content: 'from a zstd layer' }], compression: 'zstd' },
        { files: [{ path: 'plain.txt', content: 'from a plain tar' }], compression: 'none' },
      ],
    });
    await pushImage(registry.url, 'test/user-uid', 'v1', byUid);
    await pushImage(registry.url, 'test/user-name', 'v1', byName);
    await daemon.client.call('image', 'PullImage', { image: { image: `${registry.host}/test/user-uid:v1` } });
    await daemon.client.call('image', 'PullImage', { image: { image: `${registry.host}/test/user-name:v1` } });
    const a = await daemon.client.call<StatusRes>('image', 'ImageStatus', { image: { image: `${registry.host}/test/user-uid:v1` } });
    assert.equal(a.image?.uid?.value, 1002);
    assert.equal(a.image?.username, '');
    const b = await daemon.client.call<StatusRes>('image', 'ImageStatus', { image: { image: `${registry.host}/test/user-name:v1` } });
    assert.equal(b.image?.uid, null);
    assert.equal(b.image?.username, 'www');
    const verbose = await daemon.client.call<StatusRes>('image', 'ImageStatus', { image: { image: b.image?.id ?? '' }, verbose: true });
    const { snapshots } = JSON.parse(verbose.info.info ?? '{}') as { snapshots: string[] };
    assert.equal(snapshots.length, 3);
    assert.equal(await readFile(join(snapshots[0] ?? '', 'plain.txt'), 'utf8'), 'from a plain tar');
    assert.equal(await readFile(join(snapshots[1] ?? '', 'zstd.txt'), 'utf8'), 'from a zstd layer');
  });

  test('a multi-platform index resolves to linux/amd64', async () => {
    const amd64 = await busyboxImage({ config: { Labels: { arch: 'amd64' } } });
    const arm64 = await busyboxImage({ architecture: 'arm64', config: { Labels: { arch: 'arm64' } } });
    const index = await pushIndex(registry.url, 'test/multi', 'v1', [
      { image: arm64, platform: { os: 'linux', architecture: 'arm64' } },
      { image: amd64, platform: { os: 'linux', architecture: 'amd64' } },
    ]);
    const res = await daemon.client.call<{ image_ref: string }>('image', 'PullImage', { image: { image: `${registry.host}/test/multi:v1` } });
    assert.equal(res.image_ref, amd64.config.digest);
    const st = await daemon.client.call<StatusRes>('image', 'ImageStatus', { image: { image: `${registry.host}/test/multi:v1` } });
    assert.deepEqual(st.image?.repo_digests, [`${registry.host}/test/multi@${index.digest}`], 'the repo digest is the index the tag named');

    // Pulling by the index digest, as a kubelet does for pinned images, finds the same image.
    const pinned = `${registry.host}/test/multi@${index.digest}`;
    const byDigest = await daemon.client.call<{ image_ref: string }>('image', 'PullImage', { image: { image: pinned } });
    assert.equal(byDigest.image_ref, amd64.config.digest);
    const pinnedStatus = await daemon.client.call<StatusRes>('image', 'ImageStatus', { image: { image: pinned } });
    assert.equal(pinnedStatus.image?.id, amd64.config.digest);
  });

  test('layers shared between images are stored once, and removal keeps what others still use', async () => {
    const base = await busyboxImage();
    const child = await busyboxImage({ layers: [{ files: [{ path: 'child.txt', content: 'child' }] }] });
    await pushImage(registry.url, 'test/base', 'v1', base);
    await pushImage(registry.url, 'test/child', 'v1', child);
    await daemon.client.call('image', 'PullImage', { image: { image: `${registry.host}/test/base:v1` } });
    const before = await listSnapshots(daemon);
    assert.deepEqual(before, [(base.layers[0]?.diffId ?? '').slice(7)]);
    await daemon.client.call('image', 'PullImage', { image: { image: `${registry.host}/test/child:v1` } });
    const afterPull = await listSnapshots(daemon);
    // The busybox layer is stored once; only child.txt's layer is new.
    assert.equal(afterPull.length, 2);
    assert.ok(before.every((s) => afterPull.includes(s)));

    await daemon.client.call('image', 'RemoveImage', { image: { image: `${registry.host}/test/child:v1` } });
    const st = await daemon.client.call<StatusRes>('image', 'ImageStatus', { image: { image: `${registry.host}/test/child:v1` } });
    assert.equal(st.image, null);
    assert.deepEqual((await listSnapshots(daemon)).sort(), before.sort(), "child's own layer is collected, the shared one kept");
    const blobs = await listBlobs(daemon);
    assert.ok(!blobs.includes(child.config.digest), 'config blob collected');
    assert.ok(blobs.includes(base.layers[0]?.digest ?? ''), 'shared layer blob kept');
    // Idempotent.
    await daemon.client.call('image', 'RemoveImage', { image: { image: `${registry.host}/test/child:v1` } });
  });

  test('directories a layer creates only as parents keep the mode, owner and xattrs they have below', async () => {
    // Some image builders write layers without entries for the parents of their files.
    const img = await busyboxImage({
      layers: [
        {
          files: [
            { path: 'home/user', type: 'dir', mode: 0o700, uid: 1000, gid: 1000 },
            { path: 'home/user/.cache', type: 'dir', mode: 0o750, uid: 1000, gid: 1000 },
            { path: 'data', type: 'dir', mode: 0o2770, uid: 33, gid: 33, pax: { 'SCHILY.xattr.user.label': 'kept' } },
          ],
        },
        {
          files: [
            { path: 'tmp/scratch', content: 'x' },
            { path: 'home/user/.cache/app/state', content: 'y', uid: 1000, gid: 1000 },
            { path: 'data/file', content: 'z' },
            { path: 'fresh/dir/file', content: 'w' },
          ],
        },
      ],
    });
    await pushImage(registry.url, 'test/implicit', 'v1', img);
    await daemon.client.call('image', 'PullImage', { image: { image: `${registry.host}/test/implicit:v1` } });
    const verbose = await daemon.client.call<StatusRes>('image', 'ImageStatus', { image: { image: `${registry.host}/test/implicit:v1` }, verbose: true });
    const top = (JSON.parse(verbose.info.info ?? '{}') as { snapshots: string[] }).snapshots[0] ?? '';
    const meta = async (rel: string): Promise<[number, number, string]> => {
      const st = await lstat(join(top, rel));
      return [st.uid, st.gid, (st.mode & 0o7777).toString(8)];
    };
    assert.deepEqual(await meta('tmp'), [0, 0, '1777'], '/tmp keeps its sticky 1777 from the base layer');
    assert.deepEqual(await meta('home'), [0, 0, '755']);
    assert.deepEqual(await meta('home/user'), [1000, 1000, '700'], "the user's home stays theirs");
    assert.deepEqual(await meta('home/user/.cache'), [1000, 1000, '750']);
    assert.deepEqual(await meta('home/user/.cache/app'), [0, 0, '755'], 'no layer below has it: 0755 root');
    assert.deepEqual(await meta('data'), [33, 33, '2770']);
    assert.equal(execFileSync('getfattr', ['--only-values', '-n', 'user.label', join(top, 'data')], { encoding: 'utf8' }), 'kept');
    assert.deepEqual(await meta('fresh'), [0, 0, '755']);
    const info = JSON.parse(await readFile(join(top, '..', 'info.json'), 'utf8')) as { implicitDirs?: string[] };
    assert.equal(info.implicitDirs, undefined, 'the snapshot records that its parents are settled');
  });

  test('re-pulling a moved tag moves the name; the old image keeps its repo digest', async () => {
    const first = await busyboxImage({ config: { Labels: { version: '1' } } });
    const second = await busyboxImage({ config: { Labels: { version: '2' } } });
    const ref = `${registry.host}/test/moving:v1`;
    const firstDigest = await pushImage(registry.url, 'test/moving', 'v1', first);
    await daemon.client.call('image', 'PullImage', { image: { image: ref } });
    await pushImage(registry.url, 'test/moving', 'v1', second);
    await daemon.client.call('image', 'PullImage', { image: { image: ref } });
    const now = await daemon.client.call<StatusRes>('image', 'ImageStatus', { image: { image: ref } });
    assert.equal(now.image?.id, second.config.digest);
    const old = await daemon.client.call<StatusRes>('image', 'ImageStatus', { image: { image: first.config.digest } });
    assert.deepEqual(old.image?.repo_tags, []);
    assert.deepEqual(old.image?.repo_digests, [`${registry.host}/test/moving@${firstDigest}`]);
  });

  test('RemoveImage drops every tag of the image', async () => {
    const base = await busyboxImage();
    await pushImage(registry.url, 'test/base', 'v1', base);
    for (const image of ['busybox', 'busybox:1.36', `${registry.host}/test/base:v1`]) await daemon.client.call('image', 'PullImage', { image: { image } });
    const st = await daemon.client.call<StatusRes>('image', 'ImageStatus', { image: { image: 'busybox:1.36' } });
    // test/base:v1 is the same image (fixtures are reproducible), so it shares the ID and is a tag too.
    assert.deepEqual(st.image?.repo_tags, [`${registry.host}/test/base:v1`, 'docker.io/library/busybox:1.36', 'docker.io/library/busybox:latest']);
    await daemon.client.call('image', 'RemoveImage', { image: { image: 'busybox:1.36' } });
    for (const name of ['busybox:1.36', 'busybox:latest', `${registry.host}/test/base:v1`, busybox.config.digest]) {
      const gone = await daemon.client.call<StatusRes>('image', 'ImageStatus', { image: { image: name } });
      assert.equal(gone.image, null, name);
    }
  });

  test('ImageFsInfo reports the bytes and inodes the store uses', async () => {
    await daemon.client.call('image', 'PullImage', { image: { image: 'busybox' } });
    const res = await daemon.client.call<{ image_filesystems: Array<{ used_bytes: { value: number }; inodes_used: { value: number }; fs_id: { mountpoint: string } }> }>(
      'image',
      'ImageFsInfo',
      {},
    );
    const fs = res.image_filesystems[0];
    assert.ok(fs);
    assert.ok(fs.used_bytes.value > 1_000_000, `used ${fs.used_bytes.value}`);
    assert.ok(fs.inodes_used.value > 10, `inodes ${fs.inodes_used.value}`);
    assert.equal(fs.fs_id.mountpoint, daemon.root);
  });

  test('bad input gets the right code and a message that says what was wrong', async () => {
    await assert.rejects(daemon.client.call('image', 'PullImage', { image: { image: 'Not/A:Valid::Ref' } }), grpcCode(GrpcStatus.INVALID_ARGUMENT, /invalid image reference/));
    await assert.rejects(daemon.client.call('image', 'PullImage', { image: { image: '' } }), grpcCode(GrpcStatus.INVALID_ARGUMENT, /empty/));
    await assert.rejects(daemon.client.call('image', 'PullImage', {}), grpcCode(GrpcStatus.INVALID_ARGUMENT, /empty/));
    await assert.rejects(
      daemon.client.call('image', 'PullImage', { image: { image: `${registry.host}/no/such:image` } }),
      grpcCode(GrpcStatus.NOT_FOUND, /no\/such/),
    );
    const st = await daemon.client.call<StatusRes>('image', 'ImageStatus', { image: { image: 'never/pulled:1' } });
    assert.equal(st.image, null);
    await daemon.client.call('image', 'RemoveImage', { image: { image: 'never/pulled:1' } });
    const v = await daemon.client.call<{ runtime_name: string }>('runtime', 'Version', {});
    assert.equal(v.runtime_name, 'berth', 'still serving');
  });
});

test('an unreachable registry is UNAVAILABLE after retries', ROOT_ONLY, async (t) => {
  const port = await freePort();
  const d = await startDaemon({ config: '[image]\npull_attempts = 2\n' });
  t.after(() => d.dispose());
  await assert.rejects(
    d.client.call('image', 'PullImage', { image: { image: `127.0.0.1:${port}/some/image:v1` } }),
    grpcCode(GrpcStatus.UNAVAILABLE, new RegExp(`127\\.0\\.0\\.1:${port}`)),
  );
});

test('images survive a restart, including kill -9', ROOT_ONLY, async (t) => {
  const registry = await startRegistry();
  t.after(() => registry.stop());
  const img = await busyboxImage({ config: { Labels: { restart: 'yes' } } });
  await pushImage(registry.url, 'test/restart', 'v1', img);
  const first = await startDaemon();
  await first.client.call('image', 'PullImage', { image: { image: `${registry.host}/test/restart:v1` } });
  assert.equal(await first.stop('SIGKILL'), 'SIGKILL');
  const second = await startDaemon({ root: first.root });
  t.after(async () => {
    await second.dispose();
    await first.dispose();
  });
  const st = await second.client.call<StatusRes>('image', 'ImageStatus', { image: { image: `${registry.host}/test/restart:v1` } });
  assert.equal(st.image?.id, img.config.digest);
  assert.deepEqual(st.image?.repo_tags, [`${registry.host}/test/restart:v1`]);
});

test('a damaged metadata file costs one image, not the daemon', ROOT_ONLY, async (t) => {
  const registry = await startRegistry();
  t.after(() => registry.stop());
  const keep = await busyboxImage({ config: { Labels: { which: 'keep' } } });
  const lose = await busyboxImage({ config: { Labels: { which: 'lose' } } });
  await pushImage(registry.url, 'test/keep', 'v1', keep);
  await pushImage(registry.url, 'test/lose', 'v1', lose);
  const first = await startDaemon();
  for (const repo of ['keep', 'lose']) await first.client.call('image', 'PullImage', { image: { image: `${registry.host}/test/${repo}:v1` } });
  await first.stop();
  await writeFile(join(first.root, 'metadata', 'images', `${lose.config.digest.slice(7)}.json`), '{"id": "sha256:trunc');
  const second = await startDaemon({ root: first.root });
  t.after(async () => {
    await second.dispose();
    await first.dispose();
  });
  const { images } = await second.client.call<{ images: Image[] }>('image', 'ListImages', {});
  assert.deepEqual(images.map((i) => i.id), [keep.config.digest]);
  assert.match(second.logs(), /unreadable image metadata moved aside/);
  const again = await second.client.call<{ image_ref: string }>('image', 'PullImage', { image: { image: `${registry.host}/test/lose:v1` } });
  assert.equal(again.image_ref, lose.config.digest, 'and it can be pulled again');
});

