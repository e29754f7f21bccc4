// Bundles berth-controller (bin/berth-controller.js and what it imports) into one ES module for
// the berth image: Node will not strip types under node_modules, and a bundle loads only what the
// agent uses. client-node's config module imports its whole generated API (for makeApiClient) and
// undici (for fetch-based clients); the controller uses neither, so both are replaced by stubs that
// throw if anything ever calls them. Usage: node hack/bundle-controller.ts [--out FILE] [--no-stubs]
import { build, type Plugin } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BERTH_VERSION } from '../src/version.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
export const DEFAULT_OUT = `${REPO}dist/lib/berth-controller.js`;

const STUBS: Record<string, string> = {
  'client-node-gen':
    'const no = (what) => () => { throw new Error(`${what} is not in the berth-controller bundle`); };\n' +
    'export const createConfiguration = no("createConfiguration");\n' +
    'export class ServerConfiguration { constructor() { no("ServerConfiguration")(); } }\n',
  undici:
    'const no = (what) => class { constructor() { throw new Error(`${what} is not in the berth-controller bundle`); } };\n' +
    'export const Agent = no("undici.Agent");\nexport const ProxyAgent = no("undici.ProxyAgent");\nexport const fetch = () => { throw new Error("undici.fetch is not in the berth-controller bundle"); };\n',
};

export const stubs: Plugin = {
  name: 'berth-stubs',
  setup(b) {
    b.onResolve({ filter: /^\.\/gen\/index\.js$/ }, (a) => (a.importer.includes('@kubernetes/client-node/dist/') ? { path: 'client-node-gen', namespace: 'berth-stub' } : undefined));
    b.onResolve({ filter: /^undici$/ }, (a) => (a.importer.includes('@kubernetes/client-node/dist/') ? { path: 'undici', namespace: 'berth-stub' } : undefined));
    b.onLoad({ filter: /.*/, namespace: 'berth-stub' }, (a) => ({ contents: STUBS[a.path] ?? '', loader: 'js' }));
  },
};

/** src/version.ts reads package.json beside the sources; the bundle carries the version instead. */
export const version: Plugin = {
  name: 'berth-version',
  setup(b) {
    b.onLoad({ filter: /\/src\/version\.ts$/ }, () => ({ contents: `export const BERTH_VERSION = ${JSON.stringify(BERTH_VERSION)};`, loader: 'ts' }));
  },
};

/** CommonJS dependencies call require(); an ES module bundle has none of its own. */
export const REQUIRE_BANNER = "import { createRequire as __berthRequire } from 'node:module'; const require = __berthRequire(import.meta.url);";

export async function bundle(out: string, withStubs = true): Promise<number> {
  const result = await build({
    entryPoints: [`${REPO}bin/berth-controller.js`],
    outfile: out,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    treeShaking: true,
    minify: true,
    metafile: true,
    logLevel: 'error',
    banner: { js: REQUIRE_BANNER },
    plugins: withStubs ? [version, stubs] : [version],
  });
  return Object.values(result.metafile.outputs).reduce((sum, o) => sum + o.bytes, 0);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { out: { type: 'string' }, 'no-stubs': { type: 'boolean', default: false } } });
  const out = values.out ?? DEFAULT_OUT;
  const bytes = await bundle(out, !values['no-stubs']);
  process.stdout.write(`${out}: ${Math.round(bytes / 1024)} KiB\n`);
}
