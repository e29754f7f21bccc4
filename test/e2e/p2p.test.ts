// p2p end to end: real berthds on their own loopback addresses (127.0.0.2, .3, .4) serving their
// content stores to each other, and a real registry behind a counting proxy. A node pulls the blobs
// of an image from a peer that has them (the registry serves only the manifests, where it checks
// credentials); a corrupting peer and a dead one fall back to the registry; the peer API serves
// blobs by digest only, to peers only; SetPeers is validated and decides who may fetch.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { freePort, startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { startProxy, type ProxyControls } from '../helpers/proxy.ts';
import { startDaemon, type TestDaemon } from '../helpers/daemon.ts';
import { busyboxImage, pushIndex, sha256, type BuiltImage } from '../helpers/images.ts';
import { hostPlatform } from '../../src/image/registry/platform.ts';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One plain HTTP request to a p2p server, leaving from `from` (a loopback address). */
function get(host: string, port: number, path: string, opts: { from?: string; method?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, method: opts.method ?? 'GET', localAddress: opts.from, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const errorCode = (a: Answer): string | undefined => (JSON.parse(a.body.toString()) as { errors: { code: string }[] }).errors[0]?.code;

describe('p2p image distribution', () => {
  let registry: TestRegistry;
  let upstream: ProxyControls;
  let corrupting: ProxyControls;
  let a: TestDaemon;
  let b: TestDaemon;
  let c: TestDaemon;
  let off: TestDaemon;
  let image: BuiltImage;
  let ref: string;
  let indexDigest: string;
  const ports = { a: 0, b: 0, c: 0, dead: 0 };
  const blobs = (): string[] => [...image.layers.map((l) => l.digest), image.config.digest];
  const pull = (d: TestDaemon): Promise<unknown> => d.client.call('image', 'PullImage', { image: { image: ref } });
  const imageId = async (d: TestDaemon): Promise<string | undefined> =>
    (await d.client.call<{ image: { id: string } | null }>('image', 'ImageStatus', { image: { image: ref } })).image?.id;

  before(async () => {
    registry = await startRegistry();
    upstream = await startProxy(registry.port);
    image = await busyboxImage({ config: { Env: ['P2P=1'] } });
    const platform = hostPlatform();
    indexDigest = (await pushIndex(registry.url, 'p2p/app', 'v1', [{ image, platform }])).digest;
    ref = `${upstream.host}/p2p/app:v1`;
    [ports.a, ports.b, ports.c, ports.dead] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const p2p = (listen: string, peers: string[]): string => `[p2p]\nlisten = "${listen}"\npeers = ${JSON.stringify(peers)}\npeer_timeout_ms = 2000\n`;
    a = await startDaemon({ config: p2p(`127.0.0.2:${ports.a}`, [`127.0.0.3:${ports.b}`]) });
    b = await startDaemon({ config: p2p(`127.0.0.3:${ports.b}`, [`127.0.0.2:${ports.a}`]) });
    // C's peers are pushed by each test: A behind a proxy that flips a byte of every blob, or an address nothing listens on.
    corrupting = await startProxy(ports.a, '127.0.0.2');
    corrupting.corruptBlobs = true;
    c = await startDaemon({ config: p2p(`127.0.0.4:${ports.c}`, []) });
    off = await startDaemon();
  });

  after(async () => {
    await Promise.allSettled([a, b, c, off].map((d) => d?.dispose()));
    await corrupting?.close();
    await upstream?.close();
    await registry?.stop();
  });

  test('a node pulls the blobs from a peer; the registry serves only the manifests', async () => {
    await pull(a);
    for (const digest of blobs()) assert.equal(upstream.blobGets(digest), 1, `A fetched ${digest} from the registry once`);
    const mark = upstream.requests.length;
    await pull(b);
    const seen = upstream.requests.slice(mark);
    assert.deepEqual(seen.filter((p) => p.includes('/blobs/')), [], 'B fetched no blob from the registry');
    assert.ok(seen.includes('/v2/p2p/app/manifests/v1'), `B resolved the tag at the registry: ${JSON.stringify(seen)}`);
    assert.ok(seen.includes(`/v2/p2p/app/manifests/${image.manifest.digest}`), `B fetched the platform manifest from the registry: ${JSON.stringify(seen)}`);
    assert.equal(await imageId(b), image.config.digest);
    assert.match(b.logs(), /p2p: blob fetched from a peer/);
  });

  test('a peer serving corrupted bytes is caught by the digest check: the registry serves', async () => {
    await c.client.call('peers', 'SetPeers', { peers: [corrupting.host] });
    const before = blobs().map((d) => upstream.blobGets(d));
    await pull(c);
    assert.equal(await imageId(c), image.config.digest);
    for (const [i, d] of blobs().entries()) {
      assert.ok(corrupting.blobGets(d) >= 1, 'the corrupting peer was asked');
      assert.equal(upstream.blobGets(d), (before[i] ?? 0) + 1, 'then the registry served the blob');
    }
    assert.match(c.logs(), /p2p: blob from a peer failed; fetching it from the registry/);
  });

  test('a dead peer is skipped: the registry serves', async () => {
    await c.client.call('image', 'RemoveImage', { image: { image: ref } });
    await c.client.call('peers', 'SetPeers', { peers: [`127.0.0.5:${ports.dead}`] });
    const before = blobs().map((d) => upstream.blobGets(d));
    await pull(c);
    assert.equal(await imageId(c), image.config.digest);
    for (const [i, d] of blobs().entries()) assert.equal(upstream.blobGets(d), (before[i] ?? 0) + 1, 'the registry served the blob');
    assert.match(c.logs(), /ECONNREFUSED/);
  });

  test('the peer API serves blobs by digest only, with OCI errors and digests; no manifests', async () => {
    const [layer] = image.layers;
    assert.ok(layer);
    const host = '127.0.0.2';
    assert.equal((await get(host, ports.a, '/v2/')).status, 200);
    const head = await get(host, ports.a, `/v2/p2p/app/blobs/${layer.digest}`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(layer.size));
    assert.equal(head.headers['docker-content-digest'], layer.digest);
    const blob = await get(host, ports.a, `/v2/any/repo/blobs/${layer.digest}`);
    assert.equal(sha256(blob.body), layer.digest);
    // Manifests are where the registry checks credentials: peers never serve them, by tag or digest.
    for (const reference of [image.manifest.digest, indexDigest, 'v1']) {
      const manifest = await get(host, ports.a, `/v2/p2p/app/manifests/${reference}`);
      assert.equal(manifest.status, 404, reference);
      assert.equal(errorCode(manifest), 'MANIFEST_UNKNOWN');
    }
    const missing = await get(host, ports.a, `/v2/p2p/app/blobs/sha256:${'0'.repeat(64)}`);
    assert.equal(missing.status, 404);
    assert.equal(errorCode(missing), 'BLOB_UNKNOWN');
    for (const bad of ['sha256:xyz', 'sha512:abcd', '..%2f..%2fetc']) {
      const res = await get(host, ports.a, `/v2/p2p/app/blobs/${bad}`);
      assert.equal(res.status, 400, bad);
      assert.equal(errorCode(res), 'DIGEST_INVALID');
    }
    assert.equal(errorCode(await get(host, ports.a, `/v2/Bad_Name/blobs/${layer.digest}`)), 'NAME_INVALID');
    assert.equal((await get(host, ports.a, `/v2/p2p/app/blobs/${layer.digest}`, { method: 'DELETE' })).status, 405);
    assert.equal((await get(host, ports.a, '/v2/p2p/app/tags/list')).status, 404);
    // 127.0.0.9 is no peer of A (its peers: B at 127.0.0.3, and loopback 127.0.0.1).
    const stranger = await get(host, ports.a, `/v2/p2p/app/blobs/${layer.digest}`, { from: '127.0.0.9' });
    assert.equal(stranger.status, 403);
    assert.equal(errorCode(stranger), 'DENIED');
    assert.equal((await get(host, ports.a, '/v2/', { from: '127.0.0.3' })).status, 200, 'B, a peer, is let in');
  });

  test('SetPeers validates, is reported by ListPeers, and decides who may fetch', async () => {
    await assert.rejects(a.client.call('peers', 'SetPeers', { peers: ['127.0.0.9:1', 'node-b.example:5050'] }), (err: { code: number; details: string }) => {
      assert.equal(err.code, GrpcStatus.INVALID_ARGUMENT);
      assert.match(err.details, /peer "node-b.example:5050" is not IP:PORT/);
      return true;
    });
    await assert.rejects(a.client.call('peers', 'SetPeers', { peers: ['127.0.0.9'] }), { code: GrpcStatus.INVALID_ARGUMENT });
    await assert.rejects(a.client.call('peers', 'SetPeers', { peers: ['127.0.0.9:70000'] }), { code: GrpcStatus.INVALID_ARGUMENT });
    assert.equal((await get('127.0.0.2', ports.a, '/v2/', { from: '127.0.0.9' })).status, 403, 'a refused list changed nothing');
    const set = await a.client.call<{ peers: string[] }>('peers', 'SetPeers', { peers: ['127.0.0.9:1', '127.0.0.9:1', '[::1]:5050'] });
    assert.deepEqual(set.peers, ['127.0.0.9:1', '[::1]:5050']);
    assert.deepEqual(await a.client.call('peers', 'ListPeers', {}), {
      enabled: true,
      listen: `127.0.0.2:${ports.a}`,
      static_peers: [`127.0.0.3:${ports.b}`],
      pushed_peers: ['127.0.0.9:1', '[::1]:5050'],
    });
    assert.equal((await get('127.0.0.2', ports.a, '/v2/', { from: '127.0.0.9' })).status, 200, 'a pushed peer is let in');
    await a.client.call('peers', 'SetPeers', { peers: [] });
    assert.equal((await get('127.0.0.2', ports.a, '/v2/', { from: '127.0.0.9' })).status, 403, 'and out again once dropped');

    await assert.rejects(off.client.call('peers', 'SetPeers', { peers: ['127.0.0.9:1'] }), (err: { code: number; details: string }) => {
      assert.equal(err.code, GrpcStatus.FAILED_PRECONDITION);
      assert.match(err.details, /p2p is off in this berthd: set \[p2p\] listen/);
      return true;
    });
    assert.deepEqual(await off.client.call('peers', 'ListPeers', {}), { enabled: false, listen: '', static_peers: [], pushed_peers: [] });
  });
});
