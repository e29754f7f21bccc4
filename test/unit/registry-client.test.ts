// The registry client against real registries (Debian's docker-registry on 127.0.0.1) and, for wire
// behaviour a stock registry can't be made to show (Bearer tokens, schema 1, redirects, 503s), small
// node:http servers that speak just enough of the distribution API.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { freePort, startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { buildImage, pushBlob, pushImage, pushIndex, rawLayer, sha256, MEDIA_TYPES, type BuiltImage, type ImageSpec, type PushOptions } from '../helpers/images.ts';
import { RegistryClient, type RegistryClientOptions } from '../../src/image/registry/client.ts';
import type { RegistryConfig, RegistryHostConfig } from '../../src/image/registry/config.ts';
import { isPlainHttpAllowed, resolveEndpoints } from '../../src/image/registry/hosts.ts';
import { credentialsFor, parseChallenges } from '../../src/image/registry/auth.ts';
import { parsePlatform, selectManifest, selectPlatform, type IndexEntry } from '../../src/image/registry/platform.ts';
import { MediaTypes } from '../../src/image/registry/media-types.ts';
import { parseReference } from '../../src/image/reference.ts';
import { BerthError, type ErrorKind } from '../../src/util/errors.ts';

const FAST_RETRY = { attempts: 4, baseDelayMs: 5, maxDelayMs: 20 };
const OCI_MANIFEST = MEDIA_TYPES.oci.manifest;

/**
 * Builds an image whose layers are the given bytes as they are (not tars: the client only moves
 * blobs, so a test can read a layer back as the string it pushed) and pushes it under `tag`.
 */
async function pushRawImage(registryUrl: string, repo: string, tag: string, layers: string[], spec: Partial<ImageSpec> = {}, opts: PushOptions = {}): Promise<BuiltImage> {
  const image = await buildImage({ format: 'oci', ...spec, layers: layers.map((l) => rawLayer(l)) });
  await pushImage(registryUrl, repo, tag, image, opts);
  return image;
}

function config(hosts: Record<string, RegistryHostConfig> = {}): RegistryConfig {
  return { plainHttpHosts: ['localhost', '127.0.0.1'], hosts };
}

function client(hosts: Record<string, RegistryHostConfig> = {}, extra: Partial<RegistryClientOptions> = {}): RegistryClient {
  return new RegistryClient({ config: config(hosts), retry: FAST_RETRY, ...extra });
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Asserts `promise` rejects with a BerthError of `kind` whose message matches every pattern. */
async function rejectsWith(promise: Promise<unknown>, kind: ErrorKind, ...patterns: RegExp[]): Promise<BerthError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof BerthError, `expected a BerthError, got ${String(caught)}`);
  assert.equal(caught.kind, kind, caught.message);
  for (const p of patterns) assert.match(caught.message, p);
  return caught;
}

interface FakeServer {
  url: string;
  host: string;
  port: number;
  close(): Promise<void>;
}

async function startServer(handler: (req: IncomingMessage, res: ServerResponse) => void | Promise<void>): Promise<FakeServer> {
  const server: Server = createServer((req, res) => {
    Promise.resolve(handler(req, res)).catch((err: unknown) => {
      res.statusCode = 500;
      res.end(String(err));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Forwards a request to `target` and streams the answer back. */
async function proxy(req: IncomingMessage, res: ServerResponse, target: string): Promise<void> {
  const body = await readAll(req);
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (typeof v === 'string' && k !== 'host' && k !== 'connection') headers.set(k, v);
  }
  const upstream = await fetch(target + (req.url ?? ''), {
    method: req.method,
    headers,
    body: req.method === 'GET' || req.method === 'HEAD' ? undefined : body,
    redirect: 'manual',
  });
  const out: Record<string, string> = {};
  upstream.headers.forEach((v, k) => {
    if (k !== 'content-encoding' && k !== 'transfer-encoding' && k !== 'connection') out[k] = v;
  });
  res.writeHead(upstream.status, out);
  res.end(Buffer.from(await upstream.arrayBuffer()));
}

// One real registry shared by the tests that only read from it.
let shared: TestRegistry;
before(async () => {
  shared = await startRegistry();
});
after(async () => {
  await shared.stop();
});

test('pulls a manifest by tag and by digest, OCI and Docker schema 2', async (t) => {
  const c = client();
  t.after(() => c.close());
  for (const format of ['oci', 'docker'] as const) {
    const img = await pushRawImage(shared.url, `tagdigest/${format}`, 'v1', ['layer one', 'layer two'], { format });
    const ref = parseReference(`${shared.host}/tagdigest/${format}:v1`);

    const byTag = await c.getManifest(ref);
    assert.equal(byTag.digest, img.manifest.digest);
    assert.equal(byTag.mediaType, format === 'oci' ? MediaTypes.ociManifest : MediaTypes.dockerManifest);
    assert.deepEqual(byTag.bytes, img.manifest.bytes);
    assert.equal(byTag.size, img.manifest.bytes.length);

    const byDigest = await c.getManifest(ref, img.manifest.digest);
    assert.deepEqual(byDigest.bytes, img.manifest.bytes);

    const pinned = parseReference(`${shared.host}/tagdigest/${format}@${img.manifest.digest}`);
    assert.equal((await c.getManifest(pinned)).digest, img.manifest.digest);

    // tag + digest: the digest decides what is fetched.
    const both = parseReference(`${shared.host}/tagdigest/${format}:nonexistent@${img.manifest.digest}`);
    assert.equal((await c.getManifest(both)).digest, img.manifest.digest);
  }
});

test('selects the platform out of a manifest list', async (t) => {
  const c = client();
  t.after(() => c.close());
  const repo = 'multi/arch';
  const amd = await pushRawImage(shared.url, repo, 'amd64', ['amd'], { architecture: 'amd64' });
  const arm64 = await pushRawImage(shared.url, repo, 'arm64', ['arm64'], { architecture: 'arm64', variant: 'v8' });
  const armv7 = await pushRawImage(shared.url, repo, 'armv7', ['armv7'], { architecture: 'arm', variant: 'v7' });
  const attestation = await pushRawImage(shared.url, repo, 'att', ['att']);
  for (const format of ['oci', 'docker'] as const) {
    await pushIndex(
      shared.url,
      repo,
      `list-${format}`,
      [
        { image: attestation, platform: { os: 'unknown', architecture: 'unknown' }, annotations: { 'vnd.docker.reference.type': 'attestation-manifest' } },
        { image: amd, platform: { os: 'linux', architecture: 'amd64' } },
        { image: arm64, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
        { image: armv7, platform: { os: 'linux', architecture: 'arm', variant: 'v7' } },
      ],
      format,
    );
    const ref = parseReference(`${shared.host}/${repo}:list-${format}`);
    const list = await c.getManifest(ref);
    assert.equal(list.mediaType, format === 'oci' ? MediaTypes.ociIndex : MediaTypes.dockerManifestList);
    const doc: unknown = JSON.parse(list.bytes.toString());

    assert.equal(selectPlatform(doc, 'linux/amd64', 'x').digest, amd.manifest.digest);
    assert.equal(selectPlatform(doc, 'linux/arm64', 'x').digest, arm64.manifest.digest);
    assert.equal(selectPlatform(doc, 'linux/aarch64', 'x').digest, arm64.manifest.digest);
    assert.equal(selectPlatform(doc, 'linux/arm/v7', 'x').digest, armv7.manifest.digest);
    assert.equal(selectPlatform(doc, 'linux/arm/v8', 'x').digest, armv7.manifest.digest, 'older arm variants run on newer cores');
    assert.throws(() => selectPlatform(doc, 'linux/arm/v6', 'x'), /no manifest for platform linux\/arm\/v6/);
    assert.throws(
      () => selectPlatform(doc, 'linux/s390x', `${shared.host}/${repo}`),
      (err: unknown) =>
        err instanceof BerthError &&
        err.kind === 'not-found' &&
        err.message.includes(`${shared.host}/${repo}`) &&
        err.message.includes('linux/amd64, linux/arm64/v8, linux/arm/v7') &&
        !err.message.includes('unknown'),
    );

    const chosen = selectPlatform(doc, parsePlatform('linux/arm64/v8'), 'x');
    const m = await c.getManifest(ref, chosen.digest);
    assert.deepEqual(m.bytes, arm64.manifest.bytes);
  }
});

test('platform matching rules', () => {
  const e = (digest: string, platform?: IndexEntry['platform']): IndexEntry => ({ mediaType: OCI_MANIFEST, digest, size: 1, ...(platform ? { platform } : {}) });
  const entries = [e('v6', { os: 'linux', architecture: 'arm', variant: 'v6' }), e('v5', { os: 'linux', architecture: 'arm', variant: 'v5' })];
  assert.equal(selectManifest(entries, parsePlatform('linux/arm/v7'), 'x').digest, 'v6', 'newest compatible arm variant');
  assert.equal(selectManifest([e('a', { os: 'linux', architecture: 'amd64', variant: 'v3' })], parsePlatform('linux/amd64'), 'x').digest, 'a', 'lenient when the host variant is unknown');
  assert.equal(selectManifest([e('x', { os: 'linux', architecture: 'x86_64' })], parsePlatform('linux/amd64'), 'x').digest, 'x');
  assert.equal(selectManifest([e('w', { os: 'windows', architecture: 'amd64' }), e('none')], parsePlatform('linux/amd64'), 'x').digest, 'none');
  assert.equal(
    selectManifest([e('plain', { os: 'linux', architecture: 'arm64' }), e('exact', { os: 'linux', architecture: 'arm64', variant: 'v8' })], parsePlatform('linux/arm64/v8'), 'x').digest,
    'plain',
    'arm64 and arm64/v8 are the same platform: the first entry wins',
  );
  assert.throws(() => parsePlatform('linux'), /os\/architecture/);
  assert.throws(() => selectManifest([], parsePlatform('linux/amd64'), 'img'), /available for no platform/);
});

test('streams blobs', async (t) => {
  const c = client();
  t.after(() => c.close());
  const big = randomBytes(3 * 1024 * 1024 + 17);
  const blob = rawLayer(big);
  await pushBlob(shared.url, 'blobs/stream', blob);
  const ref = parseReference(`${shared.host}/blobs/stream:whatever`);

  const { body } = await c.fetchBlob(ref, blob.digest);
  assert.equal(sha256(await readAll(body)), blob.digest);

  const whole = await c.fetchBlob(ref, blob.digest);
  assert.equal(whole.size, big.length);
  assert.equal(whole.endpoint, shared.url);
  whole.body.destroy();
});

test('404 is not-found naming the image', async (t) => {
  const c = client();
  t.after(() => c.close());
  await pushRawImage(shared.url, 'exists/here', 'v1', ['x']);
  await rejectsWith(c.getManifest(parseReference(`${shared.host}/nope/nothing:v1`)), 'not-found', new RegExp(`image ${shared.host}/nope/nothing:v1 not found`), /404/);
  await rejectsWith(c.getManifest(parseReference(`${shared.host}/exists/here:v2`)), 'not-found', /exists\/here:v2/, /MANIFEST_UNKNOWN/);
  await rejectsWith(c.getManifest(parseReference(`${shared.host}/exists/here:v2`)), 'not-found', /exists\/here:v2/);
  await rejectsWith(c.fetchBlob(parseReference(`${shared.host}/exists/here`), sha256('missing')), 'not-found', /blob sha256:[0-9a-f]+ of image/);
  await rejectsWith(c.fetchBlob(parseReference(`${shared.host}/exists/here`), 'sha256:abc'), 'invalid-argument', /blob digest/);
});

test('mirrors: dead and failing mirrors fall through to a working one, in order', async (t) => {
  const deadPort = await freePort();
  let failingHits = 0;
  const failing = await startServer((_req, res) => {
    failingHits++;
    res.writeHead(503).end('busy');
  });
  const mirror = await startRegistry();
  const c = client({ 'docker.io': { mirrors: [`http://127.0.0.1:${deadPort}`, failing.url, `${mirror.host}`] } });
  t.after(async () => {
    c.close();
    await failing.close();
    await mirror.stop();
  });
  // A docker.io image served from the mirror under the same repository path.
  const img = await pushRawImage(mirror.url, 'library/mirrored', 'latest', ['from the mirror']);
  const ref = parseReference('mirrored');
  const m = await c.getManifest(ref);
  assert.equal(m.digest, img.manifest.digest);
  assert.equal(failingHits, FAST_RETRY.attempts, 'a failing mirror is retried before moving on');
  const blob = await c.fetchBlob(ref, img.layers[0]!.digest);
  assert.equal(blob.endpoint, mirror.url);
  assert.equal((await readAll(blob.body)).toString(), 'from the mirror');
  assert.equal(failingHits, FAST_RETRY.attempts, 'an endpoint that just failed is skipped for a while');

  const fresh = client({ 'docker.io': { mirrors: [failing.url, mirror.host] } }, { endpointCooldownMs: 0 });
  t.after(() => fresh.close());
  await fresh.getManifest(ref);
  await fresh.getManifest(ref);
  assert.equal(failingHits, 3 * FAST_RETRY.attempts, 'without a cooldown every request tries it again');
});

test('mirrors: a mirror without the repository falls through to the upstream', async (t) => {
  const upstream = await startRegistry();
  const mirror = await startRegistry();
  const c = client({ [upstream.host]: { mirrors: [mirror.url] } });
  t.after(async () => {
    c.close();
    await upstream.stop();
    await mirror.stop();
  });
  const img = await pushRawImage(upstream.url, 'only/upstream', 'v1', ['up']);
  const ref = parseReference(`${upstream.host}/only/upstream:v1`);
  assert.equal((await c.getManifest(ref)).digest, img.manifest.digest);
  const blob = await c.fetchBlob(ref, img.layers[0]!.digest);
  assert.equal(blob.endpoint, upstream.url);
  assert.equal((await readAll(blob.body)).toString(), 'up');

  // Everywhere missing: the upstream's answer (not found) is what the caller sees.
  await rejectsWith(c.getManifest(parseReference(`${upstream.host}/only/upstream:v9`)), 'not-found', /only\/upstream:v9/);
});

test('mirrors: a mirror that lacks the image and an unreachable upstream is not-found, naming both', async (t) => {
  const mirror = await startRegistry();
  const dead = await freePort();
  const c = client({ [`127.0.0.1:${dead}`]: { mirrors: [mirror.url] } });
  t.after(async () => {
    c.close();
    await mirror.stop();
  });
  await rejectsWith(
    c.getManifest(parseReference(`127.0.0.1:${dead}/no/such:v1`)),
    'not-found',
    /not found on any reachable endpoint/,
    new RegExp(`${mirror.url.replace(/[.:/]/g, '\\$&')}.*404`),
    new RegExp(`127\\.0\\.0\\.1:${dead} unreachable`),
  );
});

test('mirrors: skipUpstream never contacts the upstream; all unreachable is unavailable naming each endpoint', async (t) => {
  const dead1 = await freePort();
  const dead2 = await freePort();
  const c = client({ 'docker.io': { mirrors: [`http://127.0.0.1:${dead1}`, `127.0.0.1:${dead2}`], skipUpstream: true } });
  t.after(() => c.close());
  await rejectsWith(
    c.getManifest(parseReference('busybox')),
    'unavailable',
    /registry docker\.io is unavailable/,
    new RegExp(`127\\.0\\.0\\.1:${dead1} unreachable after 4 attempts`),
    new RegExp(`127\\.0\\.0\\.1:${dead2} unreachable`),
    /ECONNREFUSED/,
  );
  assert.ok(!resolveEndpoints('docker.io', config({ 'docker.io': { mirrors: ['m:1'], skipUpstream: true } })).some((e) => !e.mirror));
});

test('retries 503 and 429 then succeeds; counts attempts', async (t) => {
  const img = await pushRawImage(shared.url, 'retry/me', 'v1', ['r']);
  let hits = 0;
  const flaky = await startServer(async (req, res) => {
    hits++;
    if (hits === 1) return void res.writeHead(503).end();
    if (hits === 2) return void res.writeHead(429, { 'retry-after': '0' }).end();
    await proxy(req, res, shared.url);
  });
  const c = client();
  t.after(async () => {
    c.close();
    await flaky.close();
  });
  const m = await c.getManifest(parseReference(`${flaky.host}/retry/me:v1`));
  assert.equal(m.digest, img.manifest.digest);
  assert.equal(hits, 3);
});

test('5xx on every attempt is unavailable after the configured attempts', async (t) => {
  let hits = 0;
  const broken = await startServer((_req, res) => {
    hits++;
    res.writeHead(502, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'UPSTREAM', message: 'bad gateway' }] }));
  });
  const c = client({}, { retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 5 } });
  t.after(async () => {
    c.close();
    await broken.close();
  });
  await rejectsWith(c.getManifest(parseReference(`${broken.host}/a:b`)), 'unavailable', /502/, /UPSTREAM: bad gateway/, /after 3 attempts/);
  assert.equal(hits, 3);
});

test('4xx is not retried', async (t) => {
  let hits = 0;
  const server = await startServer((_req, res) => {
    hits++;
    res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'NAME_INVALID', message: 'invalid repository name' }] }));
  });
  const c = client();
  t.after(async () => {
    c.close();
    await server.close();
  });
  await rejectsWith(c.getManifest(parseReference(`${server.host}/a:b`)), 'invalid-argument', /NAME_INVALID/);
  assert.equal(hits, 1);
});

test('closed port, reset connections and silence end as unavailable after retries', async (t) => {
  const closed = await freePort();
  let connections = 0;
  // A TCP server that resets every connection it accepts.
  const rst = createNetServer((socket) => {
    connections++;
    socket.resetAndDestroy();
  });
  await new Promise<void>((resolve) => rst.listen(0, '127.0.0.1', resolve));
  const rstPort = (rst.address() as { port: number }).port;
  const silent = await startServer(() => {
    // never answers
  });
  const c = client({}, { timeoutMs: 150 });
  t.after(async () => {
    c.close();
    await silent.close();
    await new Promise((resolve) => rst.close(resolve));
  });

  await rejectsWith(c.getManifest(parseReference(`127.0.0.1:${closed}/x:y`)), 'unavailable', new RegExp(`registry 127\\.0\\.0\\.1:${closed} is unavailable`), /ECONNREFUSED/, /after 4 attempts/);
  await rejectsWith(c.fetchBlob(parseReference(`127.0.0.1:${rstPort}/x`), sha256('x')), 'unavailable', /ECONNRESET/, /after 4 attempts/);
  assert.equal(connections, 4);
  const c2 = client({}, { timeoutMs: 100, retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 1 } });
  t.after(() => c2.close());
  await rejectsWith(c2.getManifest(parseReference(`${silent.host}/x:y`)), 'unavailable', /no answer from .* for 100ms/, /after 2 attempts/);
});

test('an abort signal stops a request at once', async (t) => {
  const silent = await startServer(() => {
    // never answers
  });
  const c = client();
  t.after(async () => {
    c.close();
    await silent.close();
  });
  const controller = new AbortController();
  const pending = c.getManifest(parseReference(`${silent.host}/x:y`), 'y', { signal: controller.signal });
  setTimeout(() => controller.abort(), 50);
  await assert.rejects(pending, { name: 'AbortError' });
});

test('Basic auth against a real registry with htpasswd', async (t) => {
  const reg = await startRegistry({ basicAuth: { user: 'alice', password: 's3cret' } });
  t.after(() => reg.stop());
  const auth = Buffer.from('alice:s3cret').toString('base64');
  const img = await pushRawImage(reg.url, 'private/app', 'v1', ['secret layer'], {}, { authorization: `Basic ${auth}` });
  const ref = parseReference(`${reg.host}/private/app:v1`);

  const c = client();
  t.after(() => c.close());
  assert.equal((await c.getManifest(ref, 'v1', { auth: { username: 'alice', password: 's3cret' } })).digest, img.manifest.digest);
  const blob = await c.fetchBlob(ref, img.layers[0]!.digest, { auth: { auth, serverAddress: `http://${reg.host}/` } });
  assert.equal((await readAll(blob.body)).toString(), 'secret layer');

  await rejectsWith(
    c.getManifest(ref, 'v1', { auth: { username: 'alice', password: 'wrong' } }),
    'unauthenticated',
    new RegExp(`registry ${reg.host} refused pull of repository private/app \\(401 Unauthorized`),
    /check the credentials/,
  );
  await rejectsWith(c.getManifest(ref), 'unauthenticated', new RegExp(`registry ${reg.host} refused pull`), /none were given/);

  // Credentials from the config file.
  const configured = client({ [reg.host]: { username: 'alice', password: 's3cret' } });
  t.after(() => configured.close());
  assert.equal((await configured.getManifest(ref)).digest, img.manifest.digest);
  // The kubelet's credentials for another registry are not used; the configured ones are.
  assert.equal((await configured.getManifest(ref, 'v1', { auth: { username: 'bob', password: 'x', serverAddress: 'other.example.com' } })).digest, img.manifest.digest);
});

interface FakeRegistry extends FakeServer {
  tokenRequests: Array<{ method: string; url: URL; authorization?: string; form?: URLSearchParams }>;
  registryAuth: string[];
  storageAuth: Array<string | undefined>;
}

/**
 * A registry that speaks only Bearer: /token issues tokens (checking Basic creds or a refresh
 * token when configured), /v2/ answers 401 with a challenge unless a token it issued is presented.
 * Blobs redirect to a separate "storage" server.
 */
async function startBearerRegistry(opts: {
  user?: { name: string; password: string };
  refreshToken?: string;
  staticToken?: string;
  manifests: Record<string, { contentType: string; body: Buffer; digestHeader?: string }>;
  blobs: Record<string, Buffer>;
}): Promise<FakeRegistry & { storage: FakeServer }> {
  const tokenRequests: FakeRegistry['tokenRequests'] = [];
  const registryAuth: string[] = [];
  const storageAuth: Array<string | undefined> = [];
  const issued = new Set<string>(opts.staticToken ? [opts.staticToken] : []);
  const storage = await startServer((req, res) => {
    storageAuth.push(req.headers.authorization);
    const data = opts.blobs[new URL(req.url ?? '/', 'http://x').searchParams.get('d') ?? ''];
    if (data === undefined) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': data.length }).end(data);
  });
  const server = await startServer(async (req, res) => {
    const origin = `http://${req.headers.host ?? ''}`;
    const url = new URL(req.url ?? '/', origin);
    if (url.pathname === '/token') {
      const entry: FakeRegistry['tokenRequests'][number] = { method: req.method ?? '', url, authorization: req.headers.authorization };
      tokenRequests.push(entry);
      let ok = true;
      if (req.method === 'POST') {
        entry.form = new URLSearchParams((await readAll(req)).toString());
        ok = entry.form.get('grant_type') === 'refresh_token' && entry.form.get('refresh_token') === opts.refreshToken;
      } else if (opts.user) {
        const want = `Basic ${Buffer.from(`${opts.user.name}:${opts.user.password}`).toString('base64')}`;
        ok = req.headers.authorization === want;
      }
      if (!ok) return void res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
      const token = `tok-${tokenRequests.length}`;
      issued.add(token);
      const key = req.method === 'POST' ? 'access_token' : 'token';
      return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ [key]: token, expires_in: 300 }));
    }
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    const presented = req.headers.authorization ?? '';
    registryAuth.push(presented);
    if (!issued.has(presented.replace(/^Bearer /, ''))) {
      const scope = m ? `repository:${m[1]}:pull` : '';
      res.writeHead(401, {
        'www-authenticate': `Bearer realm="${origin}/token",service="fake-registry",scope="${scope}"`,
        'content-type': 'application/json',
      });
      return void res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
    }
    if (m?.[2] === 'manifests') {
      const man = opts.manifests[`${m[1]}:${m[3]}`];
      if (man === undefined) return void res.writeHead(404).end();
      const headers: Record<string, string | number> = { 'content-type': man.contentType, 'content-length': man.body.length };
      if (man.digestHeader) headers['docker-content-digest'] = man.digestHeader;
      return void res.writeHead(200, headers).end(req.method === 'HEAD' ? undefined : man.body);
    }
    if (m?.[2] === 'blobs') return void res.writeHead(307, { location: `${storage.url}/bucket?d=${m[3]}` }).end();
    res.writeHead(404).end();
  });
  return {
    ...server,
    tokenRequests,
    registryAuth,
    storageAuth,
    storage,
    close: async () => {
      await server.close();
      await storage.close();
    },
  };
}

const manifestBody = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { digest: sha256('c'), size: 1 }, layers: [] }));
const blobBody = Buffer.from('blob behind a redirect');

test('Bearer: anonymous token flow, scope and service sent, token reused, redirect drops Authorization', async (t) => {
  const fake = await startBearerRegistry({ manifests: { 'team/app:v1': { contentType: OCI_MANIFEST, body: manifestBody } }, blobs: { [sha256(blobBody)]: blobBody } });
  const c = client();
  t.after(async () => {
    c.close();
    await fake.close();
  });
  const ref = parseReference(`${fake.host}/team/app:v1`);
  const m = await c.getManifest(ref);
  assert.equal(m.digest, sha256(manifestBody));
  assert.equal(fake.tokenRequests.length, 1);
  const tr = fake.tokenRequests[0]!;
  assert.equal(tr.method, 'GET');
  assert.equal(tr.url.searchParams.get('service'), 'fake-registry');
  assert.deepEqual(tr.url.searchParams.getAll('scope'), ['repository:team/app:pull']);
  assert.equal(tr.authorization, undefined, 'anonymous: no Basic to the token server');

  const blob = await c.fetchBlob(ref, sha256(blobBody));
  assert.deepEqual(await readAll(blob.body), blobBody);
  assert.equal(fake.tokenRequests.length, 1, 'the cached token is reused (sent up front, no 401 first)');
  assert.equal(fake.registryAuth.at(-1), 'Bearer tok-1');
  assert.deepEqual(fake.storageAuth, [undefined], 'no Authorization sent to the storage host');
});

test('Bearer: Basic credentials to the token server; wrong ones are unauthenticated naming the token server', async (t) => {
  const fake = await startBearerRegistry({ user: { name: 'u', password: 'p' }, manifests: { 'x:v1': { contentType: OCI_MANIFEST, body: manifestBody } }, blobs: {} });
  const c = client();
  t.after(async () => {
    c.close();
    await fake.close();
  });
  const ref = parseReference(`${fake.host}/x:v1`);
  assert.equal((await c.getManifest(ref, 'v1', { auth: { username: 'u', password: 'p' } })).digest, sha256(manifestBody));
  assert.equal(fake.tokenRequests[0]?.authorization, `Basic ${Buffer.from('u:p').toString('base64')}`);
  assert.equal(fake.tokenRequests[0]?.url.searchParams.get('account'), 'u');

  await rejectsWith(c.getManifest(ref, 'v1', { auth: { username: 'u', password: 'nope' } }), 'unauthenticated', new RegExp(`token server ${fake.url}`), /refused the credentials \(401/, /check the credentials/);
  // Anonymous is refused by this token server too; another pod's token must not be reused for it.
  await rejectsWith(c.getManifest(ref), 'unauthenticated', /refused an anonymous token/);
});

test('Bearer: identity token uses the OAuth2 refresh-token grant; registry token is sent as is', async (t) => {
  const fake = await startBearerRegistry({ refreshToken: 'refresh-me', staticToken: 'static-tok', manifests: { 'x:v1': { contentType: OCI_MANIFEST, body: manifestBody } }, blobs: {} });
  const c = client();
  t.after(async () => {
    c.close();
    await fake.close();
  });
  const ref = parseReference(`${fake.host}/x:v1`);
  await c.getManifest(ref, 'v1', { auth: { identityToken: 'refresh-me' } });
  const tr = fake.tokenRequests[0]!;
  assert.equal(tr.method, 'POST');
  assert.equal(tr.form?.get('grant_type'), 'refresh_token');
  assert.equal(tr.form?.get('service'), 'fake-registry');
  assert.equal(tr.form?.get('scope'), 'repository:x:pull');

  const before = fake.tokenRequests.length;
  await c.getManifest(ref, 'v1', { auth: { registryToken: 'static-tok' } });
  assert.equal(fake.tokenRequests.length, before, 'no token fetch for a registry token');
  assert.equal(fake.registryAuth.at(-1), 'Bearer static-tok');
});

test('schema 1 manifests are refused with a clear message', async (t) => {
  const schema1 = Buffer.from(JSON.stringify({ schemaVersion: 1, name: 'old/img', tag: 'latest', fsLayers: [], history: [] }));
  const fake = await startBearerRegistry({
    manifests: {
      'old/img:latest': { contentType: MediaTypes.dockerSchema1Signed, body: schema1 },
      'old/img:json': { contentType: 'application/json', body: schema1 },
    },
    blobs: {},
  });
  const c = client();
  t.after(async () => {
    c.close();
    await fake.close();
  });
  for (const tag of ['latest', 'json']) {
    const ref = parseReference(`${fake.host}/old/img:${tag}`);
    await rejectsWith(c.getManifest(ref), 'failed-precondition', new RegExp(`image ${fake.host}/old/img:${tag}`), /schema 1/, /not supported/, /push it again/);
  }
});

test('digest mismatches are refused', async (t) => {
  const wrong = sha256('something else');
  const fake = await startBearerRegistry({
    manifests: {
      [`x:${wrong}`]: { contentType: OCI_MANIFEST, body: manifestBody },
      'x:lying': { contentType: OCI_MANIFEST, body: manifestBody, digestHeader: wrong },
    },
    blobs: {},
  });
  const c = client();
  t.after(async () => {
    c.close();
    await fake.close();
  });
  await rejectsWith(c.getManifest(parseReference(`${fake.host}/x@${wrong}`)), 'failed-precondition', new RegExp(`has digest ${sha256(manifestBody)}, not ${wrong}`));
  await rejectsWith(c.getManifest(parseReference(`${fake.host}/x:lying`)), 'failed-precondition', /not sha256/);
});

test('a manifest pushed to a real registry and fetched by a mismatching digest is not-found, not accepted', async (t) => {
  const c = client();
  t.after(() => c.close());
  // An OCI manifest with a config and no layers.
  const pushed = await buildImage({ format: 'oci', layers: [] });
  const digest = await pushImage(shared.url, 'raw/manifest', 'v1', pushed);
  assert.equal((await c.getManifest(parseReference(`${shared.host}/raw/manifest@${digest}`))).digest, digest);
  await rejectsWith(c.getManifest(parseReference(`${shared.host}/raw/manifest@${sha256('nope')}`)), 'not-found');
});

test('HTTPS: an unknown CA is refused with a hint; caFile and skipVerify make it work', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-tls-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const [cert, key] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=berth-test', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' });
  const server = createHttpsServer({ cert: await readFile(cert), key: await readFile(key) }, (req, res) => {
    if (req.url === '/v2/secure/app/manifests/v1') {
      return void res.writeHead(200, { 'content-type': OCI_MANIFEST, 'content-length': manifestBody.length }).end(manifestBody);
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  // 127.0.0.1 is off the plain-HTTP list here, so the client speaks HTTPS to it.
  const https = (host: RegistryHostConfig): RegistryClient =>
    new RegistryClient({ config: { plainHttpHosts: [], hosts: { [`127.0.0.1:${port}`]: host } }, retry: FAST_RETRY });
  const ref = parseReference(`127.0.0.1:${port}/secure/app:v1`);

  const untrusted = https({});
  const trusted = https({ caFile: cert });
  const unverified = https({ skipVerify: true });
  const missingCa = https({ caFile: join(dir, 'missing.pem') });
  t.after(() => [untrusted, trusted, unverified, missingCa].forEach((c) => c.close()));
  await rejectsWith(untrusted.getManifest(ref), 'unavailable', /certificate/i, /add the registry CA with caFile/);
  assert.equal((await trusted.getManifest(ref)).digest, sha256(manifestBody));
  assert.equal((await unverified.getManifest(ref)).digest, sha256(manifestBody));
  await rejectsWith(missingCa.getManifest(ref), 'failed-precondition', /cannot read registry CA file .*missing\.pem/);
});

test('endpoint resolution, plain-HTTP allowlist and credential scoping', () => {
  const cfg = config({
    'docker.io': { mirrors: ['mirror.example.com:5000', 'http://10.0.0.1:5000/v2/', 'localhost:5001/prefix/'], caFile: '/ca.pem' },
    'mirror.example.com:5000': { username: 'm', password: 'p', caFile: '/mirror-ca.pem' },
    'private.example.com': { plainHttp: true },
  });
  const eps = resolveEndpoints('docker.io', cfg);
  assert.deepEqual(
    eps.map((e) => [e.base, e.host, e.mirror]),
    [
      ['https://mirror.example.com:5000', 'mirror.example.com:5000', true],
      ['http://10.0.0.1:5000', '10.0.0.1:5000', true],
      ['http://localhost:5001/prefix', 'localhost:5001', true],
      ['https://registry-1.docker.io', 'registry-1.docker.io', false],
    ],
  );
  assert.deepEqual(eps[0]!.tls.caFiles, ['/ca.pem', '/mirror-ca.pem']);
  assert.equal(resolveEndpoints('private.example.com', cfg)[0]!.base, 'http://private.example.com');
  assert.equal(resolveEndpoints('quay.io', cfg)[0]!.base, 'https://quay.io');
  assert.equal(resolveEndpoints('127.0.0.1:5000', cfg)[0]!.base, 'http://127.0.0.1:5000');

  assert.ok(isPlainHttpAllowed('localhost:9999', cfg));
  assert.ok(!isPlainHttpAllowed('example.com', cfg));
  const portOnly = { plainHttpHosts: ['reg.lan:5000'], hosts: {} };
  assert.ok(isPlainHttpAllowed('reg.lan:5000', portOnly));
  assert.ok(!isPlainHttpAllowed('reg.lan:5001', portOnly));
  assert.ok(!isPlainHttpAllowed('reg.lan', portOnly));
  assert.throws(() => resolveEndpoints('x.io', config({ 'x.io': { skipUpstream: true } })), /no mirrors/);
  assert.throws(() => resolveEndpoints('x.io', config({ 'x.io': { mirrors: ['ftp://m'] } })), /http:\/\/ or https:\/\//);

  const [mirror, , , upstream] = eps as [typeof eps[0], unknown, unknown, typeof eps[0]];
  const kubelet = { username: 'k', password: 'kp' };
  assert.deepEqual(credentialsFor(upstream, kubelet), { username: 'k', password: 'kp' });
  assert.deepEqual(credentialsFor(upstream, { ...kubelet, serverAddress: 'https://index.docker.io/v1/' }), { username: 'k', password: 'kp' });
  assert.equal(credentialsFor(upstream, { ...kubelet, serverAddress: 'quay.io' }), undefined);
  assert.deepEqual(credentialsFor(mirror, kubelet), { username: 'm', password: 'p' }, 'the kubelet creds are not sent to a mirror');
  assert.deepEqual(credentialsFor(mirror, { ...kubelet, serverAddress: 'mirror.example.com:5000' }), { username: 'k', password: 'kp' });
  assert.deepEqual(credentialsFor(upstream, { auth: Buffer.from('a:b:c').toString('base64') }), { username: 'a', password: 'b:c' });
});

test('WWW-Authenticate parsing', () => {
  assert.deepEqual(parseChallenges(['Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push"']), [
    { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull,push' } },
  ]);
  assert.deepEqual(parseChallenges(['Basic realm="Registry Realm"', 'Bearer realm=https://a/t, error="insufficient_scope"']), [
    { scheme: 'basic', params: { realm: 'Registry Realm' } },
    { scheme: 'bearer', params: { realm: 'https://a/t', error: 'insufficient_scope' } },
  ]);
  assert.deepEqual(parseChallenges(['Basic realm="a \\"quoted\\" realm", Bearer realm="r"']), [
    { scheme: 'basic', params: { realm: 'a "quoted" realm' } },
    { scheme: 'bearer', params: { realm: 'r' } },
  ]);
  assert.deepEqual(parseChallenges(['']), []);
});
