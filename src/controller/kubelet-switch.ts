// Points a node's kubelet at berth (`berth-controller switch-kubelet`) or back (`--revert`), in
// whichever files this kubelet keeps its runtime endpoints: kubeadm's KubeletConfiguration
// (/var/lib/kubelet/config.yaml), kubeadm's flag file (/var/lib/kubelet/kubeadm-flags.env, whose
// flags win over the config file) and k3s's config (/etc/rancher/k3s/config.yaml). Each file is
// saved once as `<file>.berth-backup` before its first edit (a rerun never overwrites the
// original), edited line by line so nothing else in it changes, and restored byte for byte on
// revert. The kubelet is then restarted through the host's systemd. The node agent's switch flow
// (cordon and drain check, taint, verify, label) is not built yet.
import { readFile, rename, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { syncDir, writeFileAtomic } from '../util/atomic-file.ts';
import type { Systemctl } from './host-systemd.ts';

export const BERTH_ENDPOINT = 'unix:///run/berth/berth.sock';
const BACKUP = '.berth-backup';

interface Layout {
  /** Host path of the file. */
  file: string;
  /** The unit to restart after editing it. */
  unit: string;
  edit(text: string, endpoint: string): string;
}

/** Sets top-level `key: value` lines of a YAML file, appending the keys it lacks. */
function yamlKeys(keys: string[]): Layout['edit'] {
  return (text, endpoint) => {
    let out = text;
    for (const key of keys) {
      const re = new RegExp(`^${key}:[^\\n]*$`, 'm');
      const line = `${key}: ${endpoint}`;
      out = re.test(out) ? out.replace(re, line) : `${out}${out === '' || out.endsWith('\n') ? '' : '\n'}${line}\n`;
    }
    return out;
  };
}

/** Sets `--flag=value` inside KUBELET_KUBEADM_ARGS="…", adding the flags it lacks. */
function envFlags(flags: string[]): Layout['edit'] {
  return (text, endpoint) => {
    const m = /^(KUBELET_KUBEADM_ARGS=")([^"]*)(")[ \t]*$/m.exec(text);
    if (!m) throw new Error('kubeadm-flags.env has no KUBELET_KUBEADM_ARGS="…" line');
    let args = m[2] ?? '';
    for (const flag of flags) {
      const re = new RegExp(`--${flag}=\\S*`);
      args = re.test(args) ? args.replace(re, `--${flag}=${endpoint}`) : `${args}${args ? ' ' : ''}--${flag}=${endpoint}`;
    }
    return text.replace(m[0], `${m[1]}${args}${m[3]}`);
  };
}

const LAYOUTS: Layout[] = [
  { file: 'var/lib/kubelet/config.yaml', unit: 'kubelet', edit: yamlKeys(['containerRuntimeEndpoint', 'imageServiceEndpoint']) },
  { file: 'var/lib/kubelet/kubeadm-flags.env', unit: 'kubelet', edit: envFlags(['container-runtime-endpoint', 'image-service-endpoint']) },
  { file: 'etc/rancher/k3s/config.yaml', unit: 'k3s', edit: yamlKeys(['container-runtime-endpoint', 'image-service-endpoint']) },
];

const exists = (path: string): Promise<boolean> => stat(path).then(() => true, () => false);

/** Edits every kubelet file present under `hostRoot`; returns the files edited. */
export async function switchKubelet(hostRoot: string, systemctl: Systemctl, signal: AbortSignal, endpoint = BERTH_ENDPOINT): Promise<string[]> {
  const found: Layout[] = [];
  for (const l of LAYOUTS) if (await exists(join(hostRoot, l.file))) found.push(l);
  if (found.length === 0) throw new Error(`no kubelet configuration found under ${hostRoot} (looked for ${LAYOUTS.map((l) => `/${l.file}`).join(', ')})`);
  for (const l of found) {
    const path = join(hostRoot, l.file);
    const text = await readFile(path, 'utf8');
    // Edit every file before writing any, so a file we cannot parse leaves all of them untouched.
    l.edit(text, endpoint);
  }
  for (const l of found) {
    const path = join(hostRoot, l.file);
    const text = await readFile(path, 'utf8');
    if (!(await exists(path + BACKUP))) await writeFileAtomic(path + BACKUP, text);
    const edited = l.edit(text, endpoint);
    if (edited !== text) await writeFileAtomic(path, edited);
  }
  for (const unit of new Set(found.map((l) => l.unit))) await systemctl(['restart', unit], signal);
  return found.map((l) => `/${l.file}`);
}

/** Restores every backed-up kubelet file byte for byte and restarts the kubelet. */
export async function revertKubelet(hostRoot: string, systemctl: Systemctl, signal: AbortSignal): Promise<string[]> {
  const restored: Layout[] = [];
  for (const l of LAYOUTS) {
    const path = join(hostRoot, l.file);
    if (!(await exists(path + BACKUP))) continue;
    await rename(path + BACKUP, path);
    await syncDir(dirname(path));
    restored.push(l);
  }
  for (const unit of new Set(restored.map((l) => l.unit))) await systemctl(['restart', unit], signal);
  return restored.map((l) => `/${l.file}`);
}
