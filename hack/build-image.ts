// Builds the berth image without a container daemon: an OCI image whose layers are tar streams
// made here (test/helpers/images.ts does the tar, compression and manifests, as for every image
// the tests build), written as an OCI layout directory and/or pushed to a registry.
//   layer 1: /berth/bin/node (this Node 24), /berth/bin/busybox (static; the installer's chroot),
//            /etc/ssl/certs/ca-certificates.crt
//   layer 2: /berth/app: berthd as it runs on the host (bin/, src/, proto/, package.json and the
//            node_modules berthd needs, none of them TypeScript) and dist/lib/berth-controller.js,
//            the controller bundle (hack/bundle-controller.ts)
// The installer copies /berth to the host's /opt/berth/<version>/. Usage:
//   node hack/build-image.ts [--oci-dir DIR] [--push http://HOST:PORT/REPO:TAG] [--node FILE]
import { createReadStream } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildImage, buildLayer, pushImage, layerStream, type BuiltImage, type FileSpec } from '../test/helpers/images.ts';
import { bundle } from './bundle-controller.ts';
import { IMAGE_BUNDLE, IMAGE_NODE } from './render-manifests.ts';

export { IMAGE_BUNDLE, IMAGE_NODE };
import { BERTH_VERSION } from '../src/version.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const CA_FILE = '/etc/ssl/certs/ca-certificates.crt';

async function fileSpec(src: string, dest: string): Promise<FileSpec> {
  const st = await lstat(src);
  if (st.isSymbolicLink()) return { path: dest, type: 'symlink', linkname: await readlink(src) };
  if (st.isDirectory()) return { path: dest, type: 'dir', mode: st.mode & 0o7777 };
  return { path: dest, mode: st.mode & 0o7777, content: { size: st.size, stream: () => createReadStream(src) } };
}

async function tree(src: string, dest: string, skip: (rel: string) => boolean = () => false): Promise<FileSpec[]> {
  const out: FileSpec[] = [await fileSpec(src, dest)];
  for (const e of (await readdir(src, { recursive: true, withFileTypes: true })).sort((a, b) => join(a.parentPath, a.name).localeCompare(join(b.parentPath, b.name)))) {
    const path = join(e.parentPath, e.name);
    const rel = relative(src, path);
    if (skip(rel)) continue;
    out.push(await fileSpec(path, join(dest, rel)));
  }
  return out;
}

/** The package directories berthd needs at run time: its dependencies' closure, not the controller's. */
async function daemonPackages(): Promise<string[]> {
  const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  const roots = Object.keys(pkg.dependencies).filter((d) => !d.startsWith('@kubernetes/'));
  const found = new Set<string>();
  const visit = async (name: string, from: string): Promise<void> => {
    // Node's lookup: the requiring package's node_modules, then each parent's.
    for (let dir = from; ; dir = dirname(dir)) {
      const candidate = join(dir, 'node_modules', name);
      if (await lstat(join(candidate, 'package.json')).then(() => true, () => false)) {
        if (found.has(candidate)) return;
        found.add(candidate);
        const p = JSON.parse(await readFile(join(candidate, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
        for (const dep of Object.keys({ ...p.dependencies, ...p.optionalDependencies })) await visit(dep, candidate);
        return;
      }
      if (dir === REPO.replace(/\/$/, '') || dir === '/') return;
    }
  };
  for (const r of roots) await visit(r, REPO.replace(/\/$/, ''));
  return [...found].sort();
}

export async function buildBerthImage(work: string, nodeBinary = process.execPath): Promise<BuiltImage> {
  const dirs = (paths: string[]): FileSpec[] => paths.map((path) => ({ path, type: 'dir' }));
  const base: FileSpec[] = [
    ...dirs(['berth', 'berth/bin', 'etc', 'etc/ssl', 'etc/ssl/certs']),
    { path: 'tmp', type: 'dir', mode: 0o1777 },
    await fileSpec(nodeBinary, 'berth/bin/node'),
    await fileSpec('/bin/busybox', 'berth/bin/busybox'),
    await fileSpec(CA_FILE, CA_FILE.slice(1)),
  ];
  const bundleFile = join(work, 'berth-controller.js');
  await bundle(bundleFile);
  const app: FileSpec[] = [
    ...dirs(['berth', 'berth/app', 'berth/app/node_modules', 'berth/app/dist', 'berth/app/dist/lib']),
    await fileSpec(join(REPO, 'package.json'), 'berth/app/package.json'),
    ...(await tree(join(REPO, 'bin'), 'berth/app/bin')),
    ...(await tree(join(REPO, 'src'), 'berth/app/src', (rel) => rel.startsWith('controller'))),
    ...(await tree(join(REPO, 'proto'), 'berth/app/proto')),
    await fileSpec(bundleFile, IMAGE_BUNDLE.slice(1)),
  ];
  const seen = new Set<string>();
  for (const dir of await daemonPackages()) {
    const rel = relative(join(REPO, 'node_modules'), dir);
    // Parent directories of nested packages (a scope, or a package's own node_modules).
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      if (seen.has(parent)) continue;
      seen.add(parent);
      app.push({ path: `berth/app/node_modules/${parent}`, type: 'dir' });
    }
    app.push(...(await tree(dir, `berth/app/node_modules/${rel}`)));
  }
  // A package nested in another's node_modules is in both walks; one entry per path.
  const unique = [...new Map(app.map((f) => [f.path, f])).values()];
  const layers = [await buildLayer({ files: base }, join(work, 'base.tar.gz')), await buildLayer({ files: unique }, join(work, 'app.tar.gz'))];
  return buildImage({
    format: 'oci',
    layers,
    config: {
      Entrypoint: [IMAGE_NODE, IMAGE_BUNDLE],
      Env: ['PATH=/berth/bin', `SSL_CERT_FILE=${CA_FILE}`, 'NODE_USE_SYSTEM_CA=1'],
      Labels: { 'org.opencontainers.image.title': 'berth', 'org.opencontainers.image.version': BERTH_VERSION },
    },
  });
}

/** Writes an OCI image layout (oci-layout, index.json, blobs/sha256/…). */
export async function writeOciLayout(dir: string, image: BuiltImage, tag: string): Promise<void> {
  const blobs = join(dir, 'blobs/sha256');
  await mkdir(blobs, { recursive: true });
  const put = async (blob: { digest: string; bytes?: Buffer; file?: string }): Promise<void> => {
    const dest = join(blobs, blob.digest.slice('sha256:'.length));
    if (blob.bytes) await writeFile(dest, blob.bytes);
    else await writeFile(dest, layerStream(blob as Parameters<typeof layerStream>[0]));
  };
  for (const l of image.layers) await put(l);
  await put(image.config);
  await put(image.manifest);
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{ mediaType: image.manifest.mediaType, digest: image.manifest.digest, size: image.manifest.size, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  };
  await writeFile(join(dir, 'index.json'), JSON.stringify(index));
}

/** `http://HOST:PORT/REPO:TAG` → registry URL, repository, tag. */
export function parsePushTarget(target: string): { url: string; repo: string; tag: string } {
  const m = /^(https?:\/\/[^/]+)\/(.+):([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$/.exec(target);
  if (!m) throw new Error(`--push wants http(s)://HOST[:PORT]/REPO:TAG, got ${JSON.stringify(target)}`);
  return { url: m[1] as string, repo: m[2] as string, tag: m[3] as string };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'oci-dir': { type: 'string' }, push: { type: 'string' }, node: { type: 'string' } } });
  if (!values['oci-dir'] && !values.push) throw new Error('say where the image goes: --oci-dir DIR and/or --push http://HOST:PORT/REPO:TAG');
  const target = values.push ? parsePushTarget(values.push) : undefined;
  const work = await mkdtemp(join(tmpdir(), 'berth-image-'));
  try {
    const image = await buildBerthImage(work, values.node);
    const size = image.layers.reduce((s, l) => s + l.size, 0);
    process.stdout.write(`berth image ${image.manifest.digest}: ${image.layers.length} layers, ${Math.round(size / 1048576)} MiB compressed\n`);
    if (values['oci-dir']) await writeOciLayout(values['oci-dir'], image, target?.tag ?? BERTH_VERSION);
    if (target) process.stdout.write(`pushed ${target.repo}:${target.tag} as ${await pushImage(target.url, target.repo, target.tag, image)}\n`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`build-image: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
