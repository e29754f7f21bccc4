// berth.v1.Pins on the CRI socket: pinned names make CRI report `pinned: true`, survive a restart,
// follow a tag, and bad requests or a damaged pin file get clear answers.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { startDaemon, type TestDaemon } from '../helpers/daemon.ts';
import { busyboxImage, pushImage } from '../helpers/images.ts';
import type { Image__Output as Image } from '../../src/cri/gen/runtime/v1/Image.ts';

const pinned = async (d: TestDaemon, ref: string): Promise<boolean | undefined> =>
  (await d.client.call<{ image: Image | null }>('image', 'ImageStatus', { image: { image: ref } })).image?.pinned;

describe('image pins', () => {
  let registry: TestRegistry;
  let daemon: TestDaemon;
  const earlier: TestDaemon[] = [];
  let config: string;
  before(async () => {
    registry = await startRegistry();
    await pushImage(registry.url, 'library/busybox', 'latest', await busyboxImage());
    await pushImage(registry.url, 'library/other', 'v1', await busyboxImage({ config: { Env: ['X=1'] } }));
    config = `[registry.hosts."docker.io"]\nmirrors = ["http://${registry.host}"]\nskip_upstream = true\n`;
    daemon = await startDaemon({ config });
  });
  after(async () => {
    await daemon?.dispose();
    // A daemon restarted on an earlier one's root: that one's temp dir (holding the root) goes last.
    for (const d of earlier) await d.dispose();
    await registry?.stop();
  });

  test('SetPins pins by name; ImageStatus and ListImages report it; an empty set unpins', async () => {
    await daemon.client.call('image', 'PullImage', { image: { image: 'busybox' } });
    await daemon.client.call('image', 'PullImage', { image: { image: 'other:v1' } });
    assert.equal(await pinned(daemon, 'busybox'), false);
    const set = await daemon.client.call<{ images: string[] }>('pins', 'SetPins', { owner: 'node-agent', images: ['busybox', 'docker.io/library/busybox:latest'] });
    assert.deepEqual(set.images, ['docker.io/library/busybox:latest']);
    assert.equal(await pinned(daemon, 'busybox'), true);
    assert.equal(await pinned(daemon, 'other:v1'), false);
    const list = await daemon.client.call<{ images: Image[] }>('image', 'ListImages', {});
    assert.deepEqual(list.images.filter((i) => i.pinned).map((i) => i.repo_tags), [['docker.io/library/busybox:latest']]);
    // Another owner's pins are kept apart.
    await daemon.client.call('pins', 'SetPins', { owner: 'admin', images: ['other:v1'] });
    const all = await daemon.client.call<{ pins: { owner: string; images: string[] }[] }>('pins', 'ListPins', {});
    assert.deepEqual(all.pins, [
      { owner: 'admin', images: ['docker.io/library/other:v1'] },
      { owner: 'node-agent', images: ['docker.io/library/busybox:latest'] },
    ]);
    await daemon.client.call('pins', 'SetPins', { owner: 'node-agent', images: [] });
    assert.equal(await pinned(daemon, 'busybox'), false);
    assert.equal(await pinned(daemon, 'other:v1'), true);
    await daemon.client.call('pins', 'SetPins', { owner: 'admin', images: [] });
  });

  test('pins survive a restart; a damaged pin file is moved aside and costs only that owner', async () => {
    await daemon.client.call('pins', 'SetPins', { owner: 'node-agent', images: ['busybox'] });
    await daemon.client.call('pins', 'SetPins', { owner: 'admin', images: ['other:v1'] });
    await daemon.stop();
    const dir = join(daemon.root, 'metadata', 'pins');
    const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
    assert.equal(files.length, 2);
    // Damage whichever file holds admin's pins.
    const adminFile = (await Promise.all(files.map(async (f) => [f, await readFile(join(dir, f), 'utf8')] as const))).find(([, t]) => t.includes('"admin"'))?.[0];
    assert.ok(adminFile);
    await writeFile(join(dir, adminFile), '{"owner": "admin", "images": [1');
    const again = await startDaemon({ config, root: daemon.root });
    try {
      assert.equal(await pinned(again, 'busybox'), true);
      assert.equal(await pinned(again, 'other:v1'), false);
      assert.ok((await readdir(dir)).includes(`${adminFile}.corrupt`));
      assert.match(again.logs(), /unreadable pin set moved aside/);
    } finally {
      await again.dispose();
    }
    earlier.push(daemon);
    daemon = await startDaemon({ config, root: daemon.root });
  });

  test('bad owners and references are INVALID_ARGUMENT with the reason', async () => {
    const invalid = (re: RegExp) => (err: { code: number; details: string }) => {
      assert.equal(err.code, GrpcStatus.INVALID_ARGUMENT);
      assert.match(err.details, re);
      return true;
    };
    await assert.rejects(daemon.client.call('pins', 'SetPins', { owner: '', images: ['busybox'] }), invalid(/pin owner "" must be/));
    await assert.rejects(daemon.client.call('pins', 'SetPins', { owner: 'x', images: ['Not A Ref'] }), invalid(/cannot pin "Not A Ref"/));
  });
});
