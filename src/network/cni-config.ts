// CNI network configuration: parsing .conflist/.conf/.json files and picking the one the node uses
// (the first valid file in lexical order, as containerd and CRI-O do).
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../util/errors.ts';

/** Spec versions whose result and error shapes berth reads (Debian's plugins 1.1 speak all of them). */
export const SUPPORTED_CNI_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] as const;

/** One plugin's configuration object, passed on stdin with name, cniVersion and runtime additions. */
export interface PluginConf {
  type: string;
  capabilities?: Record<string, boolean>;
  [key: string]: unknown;
}

export interface NetworkList {
  name: string;
  cniVersion: string;
  disableCheck: boolean;
  plugins: PluginConf[];
}

export interface LoadedNetwork {
  network: NetworkList;
  /** File it came from, for messages and `crictl info`. */
  source: string;
}

const CONF_FILE = /\.(conflist|conf|json)$/;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function checkPlugin(p: unknown, where: string): PluginConf {
  if (!isObject(p)) throw new Error(`${where} is not an object`);
  // The type names a binary in the plugin directories: refuse anything that could walk out of them.
  if (typeof p.type !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(p.type)) {
    throw new Error(`${where} has no valid "type" (the plugin binary's name)`);
  }
  if (p.capabilities !== undefined && !isObject(p.capabilities)) throw new Error(`${where}.capabilities must be an object`);
  return p as PluginConf;
}

/** Validates a parsed config list (`.conflist`) or single-plugin config (`.conf`, `.json`). */
export function parseNetwork(doc: unknown, list: boolean): NetworkList {
  if (!isObject(doc)) throw new Error('not a JSON object');
  if (typeof doc.name !== 'string' || doc.name === '') throw new Error('"name" is missing');
  const cniVersion = typeof doc.cniVersion === 'string' ? doc.cniVersion : '';
  if (!(SUPPORTED_CNI_VERSIONS as readonly string[]).includes(cniVersion)) {
    throw new Error(`cniVersion ${JSON.stringify(doc.cniVersion)} is not supported (use one of ${SUPPORTED_CNI_VERSIONS.join(', ')})`);
  }
  let plugins: PluginConf[];
  if (list) {
    if (!Array.isArray(doc.plugins) || doc.plugins.length === 0) throw new Error('"plugins" must be a non-empty array');
    plugins = doc.plugins.map((p, i) => checkPlugin(p, `plugins[${i}]`));
  } else {
    plugins = [checkPlugin(doc, 'the config')];
  }
  return { name: doc.name, cniVersion, disableCheck: doc.disableCheck === true, plugins };
}

export type DirScan =
  | { kind: 'found'; loaded: LoadedNetwork; skipped: string[] }
  | { kind: 'empty' }
  | { kind: 'invalid'; skipped: string[] };

/**
 * Reads `dir` and returns the first valid network in lexical file order. `empty` means there is
 * no candidate file at all (berth may use its own default network); `invalid` means there are
 * candidates but none parses, which the admin must fix. `skipped` says why each file was passed over.
 */
export async function scanConfDir(dir: string): Promise<DirScan> {
  let files: string[];
  try {
    files = (await readdir(dir)).filter((f) => CONF_FILE.test(f)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'empty' };
    return { kind: 'invalid', skipped: [`${dir}: ${errorMessage(err)}`] };
  }
  if (files.length === 0) return { kind: 'empty' };
  const skipped: string[] = [];
  for (const file of files) {
    const source = join(dir, file);
    try {
      const network = parseNetwork(JSON.parse(await readFile(source, 'utf8')), file.endsWith('.conflist'));
      return { kind: 'found', loaded: { network, source }, skipped };
    } catch (err) {
      skipped.push(`${source}: ${errorMessage(err)}`);
    }
  }
  return { kind: 'invalid', skipped };
}
