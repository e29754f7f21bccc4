// The berth image, built without a container daemon (hack/build-image.ts), pushed to a real
// registry and pulled by berthd itself: its layers hold a Node that runs, a berthd whose imports
// all resolve, and the controller bundle.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { startDaemon, type TestDaemon } from '../helpers/daemon.ts';
import { pushImage } from '../helpers/images.ts';
import { buildBerthImage, writeOciLayout, IMAGE_BUNDLE, IMAGE_NODE } from '../../hack/build-image.ts';
import { BERTH_VERSION } from '../../src/version.ts';

describe('berth image', () => {
  let registry: TestRegistry;
  let daemon: TestDaemon;
  let work: string;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'berth-image-test-'));
    [registry, daemon] = await Promise.all([startRegistry(), startDaemon()]);
  });
  after(async () => {
    await daemon?.dispose();
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  test('built, written as an OCI layout, pushed, pulled by berthd, and runnable from its layers', async () => {
    const image = await buildBerthImage(work);
    await writeOciLayout(join(work, 'oci'), image, BERTH_VERSION);
    const index = JSON.parse(await readFile(join(work, 'oci/index.json'), 'utf8')) as { manifests: { digest: string }[] };
    assert.equal(index.manifests[0]?.digest, image.manifest.digest);
    assert.ok(existsSync(join(work, 'oci/blobs/sha256', image.manifest.digest.slice(7))));

    const ref = `${registry.host}/berth/berth:${BERTH_VERSION}`;
    await pushImage(registry.url, 'berth/berth', BERTH_VERSION, image);
    await daemon.client.call('image', 'PullImage', { image: { image: ref } });
    const status = await daemon.client.call<{ info: { info: string } }>('image', 'ImageStatus', { image: { image: ref }, verbose: true });
    const info = JSON.parse(status.info.info) as { snapshots: string[]; imageSpec: { config: { Entrypoint: string[] } } };
    assert.deepEqual(info.imageSpec.config.Entrypoint, [IMAGE_NODE, IMAGE_BUNDLE]);
    // overlayfs order: top layer first.
    const [app, base] = info.snapshots as [string, string];
    const node = join(base, IMAGE_NODE);
    assert.equal(execFileSync(node, ['--version'], { encoding: 'utf8' }).trim(), process.version);
    assert.ok(existsSync(join(base, 'berth/bin/busybox')) && existsSync(join(base, 'etc/ssl/certs/ca-certificates.crt')));
    // berthd from the image: every import resolves from its own node_modules.
    assert.equal(execFileSync(node, [join(app, 'berth/app/bin/berthd.js'), '--version'], { encoding: 'utf8' }).trim(), `berthd ${BERTH_VERSION}`);
    assert.equal(execFileSync(node, [join(app, IMAGE_BUNDLE), '--version'], { encoding: 'utf8' }).trim(), `berth-controller ${BERTH_VERSION}`);
    assert.ok(!existsSync(join(app, 'berth/app/node_modules/@kubernetes')), 'berthd ships without the Kubernetes client');
  });
});
