// The berth image, built by hack/build-image.ts without a Docker daemon, pushed to a real local
// registry and pulled by a real berthd: the unpacked layer holds Node.js, the bundles, nsenter, the
// libraries they load and the CA certificates, and the bundled programs run from it. The bundled
// berthd then pulls its own image, which exercises its gRPC descriptor and unpack worker.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildBerthImage, pushBerthImage, type BerthImage } from '../../hack/build-image.ts';
import { startDaemon, type TestDaemon } from '../helpers/daemon.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { BERTH_VERSION } from '../../src/version.ts';
import { digestHex } from '../../src/util/digest.ts';

const run = promisify(execFile);
const ROOT = process.geteuid?.() === 0;

describe('the berth image', () => {
  let dir: string;
  let img: BerthImage;
  let registry: TestRegistry;
  let daemon: TestDaemon;
  let fs: string;
  const ref = (): string => `${registry.host}/berth/berth:${BERTH_VERSION}`;

  // One image for the whole file: building and moving ~50 MB is the slow part.
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-image-test-'));
    registry = await startRegistry();
    img = await buildBerthImage({ out: join(dir, 'layout'), gzipLevel: 1 });
    await pushBerthImage(img, registry.url, 'berth/berth', BERTH_VERSION);
    daemon = await startDaemon();
    const pulled = await daemon.client.call<{ image_ref: string }>('image', 'PullImage', { image: { image: ref() } });
    assert.equal(pulled.image_ref, img.image.config.digest);
    const diffId = img.image.config.object.rootfs.diff_ids[0] ?? '';
    fs = join(daemon.root, 'snapshots', digestHex(diffId), 'fs');
  });
  after(async () => {
    await daemon?.dispose();
    await registry?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('the layout is an OCI image layout naming the version', async () => {
    assert.deepEqual(JSON.parse(await readFile(join(dir, 'layout', 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
    const index = JSON.parse(await readFile(join(dir, 'layout', 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations: Record<string, string> }> };
    assert.equal(index.manifests[0]?.digest, img.image.manifest.digest);
    assert.equal(index.manifests[0]?.annotations['org.opencontainers.image.ref.name'], BERTH_VERSION);
    await stat(join(dir, 'layout', 'blobs', 'sha256', digestHex(img.image.layers[0]?.digest ?? '')));
  });

  test('the unpacked layer holds node, the bundles, nsenter and the CA certificates', async () => {
    for (const f of ['berth/bin/node', 'usr/bin/nsenter']) assert.ok(((await stat(join(fs, f))).mode & 0o111) !== 0, `${f} is executable`);
    for (const f of ['berthd.js', 'berth-install.js', 'berth-controller.js', 'unpack-worker.js', 'netns-connector.js', 'src/streaming/attach-relay.pl']) {
      await stat(join(fs, 'berth/lib', f));
    }
    // The gRPC descriptor travels inside the bundles (a JSON module), not as a file beside them.
    assert.match(await readFile(join(fs, 'berth/lib/berthd.js'), 'utf8'), /runtime\.v1\.RuntimeService/);
    assert.equal(JSON.parse(await readFile(join(fs, 'berth/lib/package.json'), 'utf8')).type, 'module');
    assert.ok((await readFile(join(fs, 'etc/ssl/certs/ca-certificates.crt'), 'utf8')).includes('BEGIN CERTIFICATE'));
    const { stdout } = await run(join(fs, 'berth/bin/node'), ['--version']);
    assert.match(stdout, /^v24\./);
  });

  test('the bundled programs run from the unpacked layer, on its own libraries when chrooted', async () => {
    // As root, chroot into the layer: nothing of the host's /lib helps, so the image is whole.
    const cmd = (script: string, flag: string): [string, string[]] =>
      ROOT ? ['chroot', [fs, '/berth/bin/node', `/berth/lib/${script}`, flag]] : [join(fs, 'berth/bin/node'), [join(fs, 'berth/lib', script), flag]];
    for (const [script, flag, name] of [
      ['berthd.js', '--version', 'berthd'],
      ['berth-controller.js', '--version', 'berth-controller'],
      ['berth-install.js', '--version-info', 'berth-install'],
    ] as const) {
      const { stdout } = await run(...cmd(script, flag));
      assert.equal(stdout.trim(), `${name} ${BERTH_VERSION}`);
    }
    if (ROOT) assert.match((await run('chroot', [fs, '/usr/bin/nsenter', '--version'])).stdout, /util-linux/);
  });

  test('the bundled berthd pulls its own image', async () => {
    const bundled = await startDaemon({ entry: { node: join(fs, 'berth/bin/node'), script: join(fs, 'berth/lib/berthd.js') } });
    try {
      const version = await bundled.client.call<{ runtime_version: string }>('runtime', 'Version', {});
      assert.equal(version.runtime_version, BERTH_VERSION);
      const pulled = await bundled.client.call<{ image_ref: string }>('image', 'PullImage', { image: { image: ref() } });
      assert.equal(pulled.image_ref, img.image.config.digest);
      await stat(join(bundled.root, 'snapshots', digestHex(img.image.config.object.rootfs.diff_ids[0] ?? ''), 'fs/berth/bin/node'));
    } finally {
      await bundled.dispose();
    }
  });
});
