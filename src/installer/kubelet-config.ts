// Where this kubelet keeps its runtime endpoints, and the edits that point them at berth: flags
// (`--container-runtime-endpoint`, `--image-service-endpoint`) in kubeadm-flags.env,
// /etc/default/kubelet, /etc/sysconfig/kubelet or a systemd drop-in, and the
// KubeletConfiguration file's `containerRuntimeEndpoint` / `imageServiceEndpoint`, or k3s's
// /etc/rancher/k3s/config.yaml (its kubelet runs inside the k3s unit). Edits are textual so
// everything else in each file stays byte for byte.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { failedPrecondition } from '../util/errors.ts';
import { KUBELET_UNIT, onHost } from './host.ts';

/** kubelet 1.27+ uses containerd's socket when nothing names one. */
const DEFAULT_OLD_ENDPOINT = 'unix:///run/containerd/containerd.sock';

const FLAG_FILES = ['/var/lib/kubelet/kubeadm-flags.env', '/etc/default/kubelet', '/etc/sysconfig/kubelet', '/etc/systemd/system/kubelet.service'];
const DROPIN_DIR = '/etc/systemd/system/kubelet.service.d';
/** Read-only places that may name the config file (kubeadm's drop-in lives here on packages). */
const CONFIG_HINTS = ['/usr/lib/systemd/system/kubelet.service.d', '/lib/systemd/system/kubelet.service.d', DROPIN_DIR];
const DEFAULT_CONFIG = '/var/lib/kubelet/config.yaml';
const K3S_CONFIG = '/etc/rancher/k3s/config.yaml';
/** k3s's embedded containerd, when its config names no endpoint. */
const K3S_OLD_ENDPOINT = 'unix:///run/k3s/containerd/containerd.sock';

export interface FileEdit {
  /** Host path (`/var/lib/kubelet/config.yaml`). */
  path: string;
  before: string;
  after: string;
}

/** A systemd unit or drop-in: systemd must reload before the kubelet starts with it. */
export function isUnitFile(path: string): boolean {
  return path.startsWith('/etc/systemd/');
}

export interface KubeletPlan {
  edits: FileEdit[];
  /** The endpoint the kubelet used before: its pods are removed through it. */
  oldEndpoint: string;
  /** The systemd unit the kubelet runs in: kubelet.service, or k3s.service / k3s-agent.service. */
  unit: string;
}

const flagRe = (flag: string): RegExp => new RegExp(`--${flag}(=|[ \\t]+)([^\\s"']+)`, 'g');

/** Sets every `--flag=V` / `--flag V` to `value`; `undefined` when the flag is not there. */
export function setFlag(text: string, flag: string, value: string): { text: string; old: string } | undefined {
  let old: string | undefined;
  const out = text.replace(flagRe(flag), (_m, sep: string, v: string) => {
    old ??= v;
    return `--${flag}${sep}${value}`;
  });
  return old === undefined ? undefined : { text: out, old };
}

/** Points the flags at `endpoint`; the image flag is added after the runtime flag when missing. */
export function editFlags(text: string, endpoint: string): { text: string; old?: string } | undefined {
  const runtime = setFlag(text, 'container-runtime-endpoint', endpoint);
  const image = setFlag(runtime?.text ?? text, 'image-service-endpoint', endpoint);
  if (!runtime && !image) return undefined;
  let out = image?.text ?? runtime?.text ?? text;
  if (!image) out = out.replace(flagRe('container-runtime-endpoint'), (m) => `${m} --image-service-endpoint=${endpoint}`);
  return { text: out, old: runtime?.old };
}

/** Sets the two top-level keys of a KubeletConfiguration (YAML, or JSON, which kubelet also reads). */
export function editConfig(text: string, endpoint: string): { text: string; old?: string } {
  if (text.trimStart().startsWith('{')) {
    const doc = JSON.parse(text) as Record<string, unknown>;
    const old = typeof doc.containerRuntimeEndpoint === 'string' ? doc.containerRuntimeEndpoint : undefined;
    doc.containerRuntimeEndpoint = endpoint;
    doc.imageServiceEndpoint = endpoint;
    return { text: `${JSON.stringify(doc, null, 2)}\n`, old };
  }
  return setYamlKeys(text, ['containerRuntimeEndpoint', 'imageServiceEndpoint'], endpoint);
}

/** Sets top-level `key: value` lines (appending missing keys); `old` is the first key's value before. */
export function setYamlKeys(text: string, keys: readonly string[], endpoint: string): { text: string; old?: string } {
  let out = text;
  let old: string | undefined;
  for (const [i, key] of keys.entries()) {
    const re = new RegExp(`^${key}:[ \\t]*(.*?)[ \\t]*$`, 'm');
    const m = re.exec(out);
    if (m) {
      if (i === 0) old = m[1]?.replace(/^["']|["']$/g, '');
      out = out.replace(re, `${key}: ${endpoint}`);
    } else {
      out = `${out}${out === '' || out.endsWith('\n') ? '' : '\n'}${key}: ${endpoint}\n`;
    }
  }
  return { text: out, old };
}

async function readIf(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if (['ENOENT', 'ENOTDIR', 'EISDIR'].includes((err as NodeJS.ErrnoException).code ?? '')) return undefined;
    throw err;
  }
}

async function dropIns(hostRoot: string, dir: string): Promise<string[]> {
  const names = await readdir(onHost(hostRoot, dir)).catch(() => [] as string[]);
  return names.filter((n) => n.endsWith('.conf')).sort().map((n) => join(dir, n));
}

/** k3s keeps the kubelet's flags as keys of its own config and runs it inside its server or agent unit. */
async function planK3s(hostRoot: string, endpoint: string): Promise<KubeletPlan | undefined> {
  const before = await readIf(onHost(hostRoot, K3S_CONFIG));
  if (before === undefined) return undefined;
  const edited = setYamlKeys(before, ['container-runtime-endpoint', 'image-service-endpoint'], endpoint);
  const agent = (await readIf(onHost(hostRoot, '/etc/systemd/system/k3s-agent.service'))) !== undefined;
  return {
    edits: edited.text === before ? [] : [{ path: K3S_CONFIG, before, after: edited.text }],
    oldEndpoint: edited.old ?? K3S_OLD_ENDPOINT,
    unit: agent ? 'k3s-agent.service' : 'k3s.service',
  };
}

/** Finds every place this kubelet keeps its endpoints and the edits that point them at `endpoint`. */
export async function planKubeletSwitch(hostRoot: string, endpoint: string): Promise<KubeletPlan> {
  const k3s = await planK3s(hostRoot, endpoint);
  if (k3s) return k3s;
  const edits: FileEdit[] = [];
  let oldEndpoint: string | undefined;
  let configPath: string | undefined;
  for (const dir of CONFIG_HINTS) {
    for (const path of await dropIns(hostRoot, dir)) {
      const m = /--config(?:=|[ \t]+)([^\s"']+)/.exec((await readIf(onHost(hostRoot, path))) ?? '');
      if (m?.[1]) configPath ??= m[1];
    }
  }
  const flagFiles = [...FLAG_FILES, ...(await dropIns(hostRoot, DROPIN_DIR))];
  for (const path of flagFiles) {
    const before = await readIf(onHost(hostRoot, path));
    if (before === undefined) continue;
    configPath ??= /--config(?:=|[ \t]+)([^\s"']+)/.exec(before)?.[1];
    const edited = editFlags(before, endpoint);
    if (!edited) continue;
    oldEndpoint ??= edited.old;
    if (edited.text !== before) edits.push({ path, before, after: edited.text });
  }
  configPath ??= DEFAULT_CONFIG;
  const config = await readIf(onHost(hostRoot, configPath));
  if (config !== undefined) {
    const edited = editConfig(config, endpoint);
    oldEndpoint ??= edited.old;
    if (edited.text !== config) edits.push({ path: configPath, before: config, after: edited.text });
  } else if (oldEndpoint === undefined) {
    throw failedPrecondition(
      `found no kubelet configuration to edit: no --container-runtime-endpoint in ${flagFiles.join(', ')}, no ${configPath} and no ${K3S_CONFIG}; ` +
        'point the kubelet at unix:///run/berth/berth.sock by hand',
    );
  }
  return { edits, oldEndpoint: oldEndpoint ?? DEFAULT_OLD_ENDPOINT, unit: KUBELET_UNIT };
}
