// Builds the berth image without a Docker daemon, as an OCI image layout, and optionally pushes it.
// One layer: the Node.js binary (/berth/bin/node), the esbuild bundles of berthd, berth-install and
// berth-controller with the files they read (protos, scripts, the static exec helper) (/berth/lib/; Node will not strip
// types under node_modules, so the image ships compiled JS), nsenter (the installer enters the host's mount
// namespace with it), the shared libraries those two binaries need, and the CA certificates.
// Usage: node hack/build-image.ts [--out DIR] [--node PATH] [--gzip-level N]
//                                 [--push REGISTRY_URL] [--repository R] [--tag T]
import { build, type Plugin } from 'esbuild';
import { cp, mkdir, mkdtemp, readdir, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runCommand } from '../src/util/run-command.ts';
import { BERTH_VERSION } from '../src/version.ts';
import { buildImage, buildLayer, pushImage, type BuiltImage, type FileSpec } from '../test/helpers/images.ts';
import { REQUIRE_BANNER, stubs, version } from './bundle-controller.ts';
import { IMAGE_BUNDLE, IMAGE_INSTALLER, IMAGE_NODE } from './render-manifests.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
// The DaemonSet's commands name these paths (hack/render-manifests.ts); the bundles sit together.
const IMAGE_LIB = dirname(IMAGE_BUNDLE);
if (dirname(IMAGE_INSTALLER) !== IMAGE_LIB) throw new Error('the installer and controller bundles must share a directory');
const CA_FILE = '/etc/ssl/certs/ca-certificates.crt';

/** Modules other modules start by URL (a worker thread, a child Node process): each is a bundle of its own. */
const ENTRY_MODULES: Record<string, string> = {
  [join(REPO, 'src/snapshot/unpack-worker.ts')]: 'unpack-worker',
  [join(REPO, 'src/streaming/netns-connector.ts')]: 'netns-connector',
};

/**
 * `new URL('…', import.meta.url)` in the sources points beside the .ts file; in a bundle it must
 * point beside the bundle: an entry module to its own bundle, any other file (protos, scripts) to a
 * copy under the bundle's directory at its path in the repository. A .ts file that is no entry
 * module fails the build rather than a node at run time.
 */
function assetsPlugin(assets: Set<string>): Plugin {
  return {
    name: 'berth-assets',
    setup(b) {
      b.onLoad({ filter: /\/src\/.*\.ts$/ }, async (a) => {
        const text = await readFile(a.path, 'utf8');
        if (!text.includes('import.meta.url')) return undefined;
        const contents = text.replace(/new URL\((['"])(\.\.?\/[^'"]+)\1,\s*import\.meta\.url\)/g, (_m, _q: string, rel: string) => {
          const target = resolve(dirname(a.path), rel);
          const entry = ENTRY_MODULES[target];
          if (entry) return `new URL('./${entry}.js', import.meta.url)`;
          if (target.endsWith('.ts') || !target.startsWith(REPO)) {
            throw new Error(`${a.path}: new URL('${rel}') has no place in the bundle; add it to ENTRY_MODULES in hack/build-image.ts`);
          }
          assets.add(relative(REPO, target));
          return `new URL('./${relative(REPO, target)}', import.meta.url)`;
        });
        return { contents, loader: 'ts' };
      });
    },
  };
}

/** Bundles the three programs (and the modules they start) into `lib`, with the files they read and a package.json. */
export async function bundleAll(lib: string): Promise<void> {
  // The exec helper ships beside the bundles (berthd's config default points at it there).
  await runCommand('bash', [join(REPO, 'hack/build-native.sh')], { step: 'build the exec helper', timeoutMs: 120_000 });
  const assets = new Set<string>();
  await build({
    entryPoints: {
      berthd: join(REPO, 'bin/berthd.js'),
      'berth-install': join(REPO, 'bin/berth-install.js'),
      'berth-controller': join(REPO, 'bin/berth-controller.js'),
      ...Object.fromEntries(Object.entries(ENTRY_MODULES).map(([src, name]) => [name, src])),
    },
    outdir: lib,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    minify: true,
    keepNames: true,
    logLevel: 'error',
    banner: { js: REQUIRE_BANNER },
    plugins: [version, stubs, assetsPlugin(assets)],
  });
  for (const rel of assets) await cp(join(REPO, rel), join(lib, rel), { preserveTimestamps: true });
  // The bundles are ES modules; this is what tells Node so.
  await writeFile(join(lib, 'package.json'), `${JSON.stringify({ name: 'berth', version: BERTH_VERSION, type: 'module', private: true })}\n`);
}

/** The shared libraries `binary` loads, by the paths its loader looks for them (ldd's answer). */
async function sharedLibraries(binary: string): Promise<string[]> {
  const { stdout } = await runCommand('ldd', [binary], { step: `list the libraries of ${binary}`, timeoutMs: 30_000, okCodes: [1] });
  if (/not a dynamic executable|statically linked/.test(stdout)) return [];
  return [...stdout.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x/g)].map((m) => m[1] ?? '').filter((p) => p !== '');
}

/** A file of the host placed at `path` in the image, streamed (the node binary is ~120 MB). */
async function hostFile(path: string, from: string): Promise<FileSpec> {
  const real = await realpath(from);
  const st = await stat(real);
  return { path, mode: st.mode & 0o7777, content: { size: st.size, stream: () => createReadStream(real) } };
}

async function treeFiles(dir: string, prefix: string): Promise<FileSpec[]> {
  const out: FileSpec[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(await hostFile(join(prefix, relative(dir, join(e.parentPath, e.name))), join(e.parentPath, e.name)));
  }
  return out;
}

/** Every parent directory of the files, each once, parents first. */
function parentDirs(files: FileSpec[]): FileSpec[] {
  const dirs = new Set<string>();
  for (const f of files) for (let d = dirname(f.path); d !== '.' && d !== '/'; d = dirname(d)) dirs.add(d);
  return [...dirs].sort().map((path) => ({ path, type: 'dir' }));
}

export interface BuildOptions {
  /** The OCI image layout directory (replaced). */
  out: string;
  /** Node.js binary to ship (default: the one running this). */
  node?: string;
  gzipLevel?: number;
}

export interface BerthImage {
  layout: string;
  image: BuiltImage;
}

const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

export async function buildBerthImage(o: BuildOptions): Promise<BerthImage> {
  const node = o.node ?? process.execPath;
  const work = await mkdtemp(join(tmpdir(), 'berth-image-'));
  try {
    const lib = join(work, 'lib');
    await bundleAll(lib);
    const nsenter = (await realpath('/usr/bin/nsenter').catch(() => undefined)) ?? '';
    if (!nsenter) throw new Error('/usr/bin/nsenter is missing (Debian package util-linux); the installer needs it in the image');
    const libs = new Set([...(await sharedLibraries(node)), ...(await sharedLibraries(nsenter))]);
    const files: FileSpec[] = [
      await hostFile(IMAGE_NODE.slice(1), node),
      ...(await treeFiles(lib, IMAGE_LIB.slice(1))),
      await hostFile('usr/bin/nsenter', nsenter),
      ...(await Promise.all([...libs].sort().map((l) => hostFile(l.slice(1), l)))),
      await hostFile(CA_FILE.slice(1), CA_FILE),
    ];
    files.sort((a, b) => a.path.localeCompare(b.path));
    await rm(o.out, { recursive: true, force: true });
    const blobs = join(o.out, 'blobs', 'sha256');
    await mkdir(blobs, { recursive: true });
    const tmpLayer = join(blobs, '.layer.tmp');
    const layer = await buildLayer(
      { files: [...parentDirs(files), { path: 'tmp', type: 'dir', mode: 0o1777 }, ...files], compression: 'gzip', gzipLevel: o.gzipLevel ?? 1 },
      tmpLayer,
    );
    layer.file = join(blobs, layer.digest.slice('sha256:'.length));
    await rename(tmpLayer, layer.file);
    const arch = ARCH[process.arch];
    if (!arch) throw new Error(`no OCI architecture name for ${process.arch}`);
    const image = await buildImage({
      format: 'oci',
      architecture: arch,
      layers: [layer],
      config: {
        Env: ['PATH=/usr/bin:/bin', `NODE_EXTRA_CA_CERTS=${CA_FILE}`],
        Entrypoint: [IMAGE_NODE],
        Cmd: [IMAGE_INSTALLER, '--help'],
        Labels: { 'org.opencontainers.image.title': 'berth', 'org.opencontainers.image.version': BERTH_VERSION },
      },
    });
    for (const blob of [image.config, image.manifest]) await writeFile(join(blobs, blob.digest.slice('sha256:'.length)), blob.bytes);
    const index = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{ mediaType: image.manifest.mediaType, digest: image.manifest.digest, size: image.manifest.size, annotations: { 'org.opencontainers.image.ref.name': BERTH_VERSION } }],
    };
    await writeFile(join(o.out, 'index.json'), `${JSON.stringify(index)}\n`);
    await writeFile(join(o.out, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}\n');
    return { layout: o.out, image };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Pushes over the distribution API; `auth` is `user:password` for Basic auth. Returns the manifest digest. */
export function pushBerthImage(img: BerthImage, registryUrl: string, repository: string, tag: string, auth?: string): Promise<string> {
  return pushImage(registryUrl, repository, tag, img.image, auth ? { authorization: `Basic ${Buffer.from(auth).toString('base64')}` } : {});
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    strict: true,
    options: {
      out: { type: 'string', default: join(REPO, 'dist/image') },
      node: { type: 'string' },
      'gzip-level': { type: 'string', default: '1' },
      push: { type: 'string' },
      repository: { type: 'string', default: 'berth/berth' },
      tag: { type: 'string', default: BERTH_VERSION },
    },
  });
  const level = Number(values['gzip-level']);
  if (!Number.isInteger(level) || level < 1 || level > 9) throw new Error('--gzip-level must be 1-9');
  const started = Date.now();
  const img = await buildBerthImage({ out: resolve(values.out), node: values.node, gzipLevel: level });
  const size = img.image.layers.reduce((s, l) => s + l.size, 0);
  process.stdout.write(`${img.layout}: ${img.image.manifest.digest}, layer ${(size / 2 ** 20).toFixed(1)} MiB, ${Date.now() - started} ms\n`);
  if (values.push) {
    const digest = await pushBerthImage(img, values.push.replace(/\/+$/, ''), values.repository, values.tag, process.env.BERTH_REGISTRY_AUTH);
    process.stdout.write(`pushed ${new URL(values.push).host}/${values.repository}:${values.tag} (${digest})\n`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`build-image: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
