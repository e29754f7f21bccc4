// The DaemonSet's init container: installs berthd as a host service under --host-root, side by
// side per version, and starts it. Every step converges, so a run killed anywhere is finished by
// the next one:
//   1. /opt/berth/<version>/ appears only by renaming a complete copy (marked `.complete`);
//   2. /etc/berth/config.toml is written only when absent (the admin's file is never touched);
//   3. /etc/systemd/system/berthd.service is rewritten only when its content differs;
//   4. /opt/berth/current flips to <version> by renaming a new symlink over it;
//   5. systemd reloads, enables and (re)starts berthd; KillMode=process keeps the containers'
//      monitors running across the restart;
//   6. berthd must answer CRI Status within the deadline, else `current` flips back, the old
//      version is restarted and the run fails, so the DaemonSet's rollout stops on this node.
// berthd is a host service, never a pod: a kubelet cannot supervise its own runtime.
import { cp, lstat, mkdir, readdir, readFile, readlink, rename, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { syncDir, writeFileAtomic } from '../util/atomic-file.ts';
import { CriClient } from '../client/cri-client.ts';
import type { Systemctl } from './host-systemd.ts';
import { sleep } from './backoff.ts';

export const UNIT_NAME = 'berthd.service';
const OPT = 'opt/berth';
const SOCKET = '/run/berth/berth.sock';

/** The unit, in host paths. */
export function unitFile(): string {
  return `# Written by berth's installer (berth-controller install); changes are overwritten.
[Unit]
Description=berth container runtime (CRI)
After=network-online.target local-fs.target
Wants=network-online.target
Before=kubelet.service

[Service]
ExecStart=/${OPT}/current/bin/node /${OPT}/current/app/bin/berthd.js --config /etc/berth/config.toml
Restart=always
RestartSec=2
# Containers' monitors (conmon) live in this unit's cgroup; a berthd restart must not kill them.
KillMode=process
Delegate=yes
LimitNOFILE=1048576
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
`;
}

export const DEFAULT_CONFIG = '# berthd configuration; every key is described in docs/config.md.\n';

export interface InstallOptions {
  hostRoot: string;
  version: string;
  /** The tree to install (bin/node, app/…): the image's /berth. */
  source: string;
  configTemplate?: string;
  systemctl: Systemctl;
  log: Logger;
  /** How long berthd may take to answer CRI Status. */
  waitMs: number;
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

/** Step 1: /opt/berth/<version>/ whole or not at all. */
async function installTree(o: InstallOptions): Promise<void> {
  const opt = join(o.hostRoot, OPT);
  const dest = join(opt, o.version);
  await mkdir(opt, { recursive: true, mode: 0o755 });
  for (const name of await readdir(opt)) if (name.startsWith('.tmp-')) await rm(join(opt, name), { recursive: true, force: true });
  if (await exists(join(dest, '.complete'))) return;
  const tmp = join(opt, `.tmp-${o.version}-${randomBytes(4).toString('hex')}`);
  await cp(o.source, tmp, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
  await writeFileAtomic(join(tmp, '.complete'), `${o.version}\n`);
  await rm(dest, { recursive: true, force: true });
  await rename(tmp, dest);
  await syncDir(opt);
  o.log.info({ version: o.version }, 'installed berth files');
}

/** Step 4: points `current` at `target`; returns what it pointed at before. */
async function flipCurrent(hostRoot: string, target: string): Promise<string | undefined> {
  const opt = join(hostRoot, OPT);
  const current = join(opt, 'current');
  const before = await readlink(current).catch(() => undefined);
  if (before === target) return before;
  const tmp = join(opt, `.tmp-current-${randomBytes(4).toString('hex')}`);
  await symlink(target, tmp);
  await rename(tmp, current);
  await syncDir(opt);
  return before;
}

/** Step 6: berthd answers CRI Status through the host's socket. */
async function answers(hostRoot: string, waitMs: number): Promise<string | undefined> {
  const client = new CriClient(join(hostRoot, SOCKET));
  const deadline = Date.now() + waitMs;
  let last = 'no answer';
  try {
    while (Date.now() < deadline) {
      try {
        await client.call('runtime', 'Status', {}, { timeoutMs: Math.max(500, Math.min(5000, deadline - Date.now())) });
        return undefined;
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(200, AbortSignal.timeout(Math.max(1, deadline - Date.now())));
    }
    return last;
  } finally {
    client.close();
  }
}

export async function install(o: InstallOptions, signal: AbortSignal): Promise<void> {
  await installTree(o);
  const config = join(o.hostRoot, 'etc/berth/config.toml');
  if (!(await exists(config))) {
    await mkdir(join(o.hostRoot, 'etc/berth'), { recursive: true, mode: 0o755 });
    await writeFileAtomic(config, o.configTemplate ? await readFile(o.configTemplate, 'utf8') : DEFAULT_CONFIG);
  }
  const unitPath = join(o.hostRoot, 'etc/systemd/system', UNIT_NAME);
  const unitChanged = (await readFile(unitPath, 'utf8').catch(() => '')) !== unitFile();
  if (unitChanged) {
    await mkdir(join(o.hostRoot, 'etc/systemd/system'), { recursive: true, mode: 0o755 });
    await writeFileAtomic(unitPath, unitFile());
  }
  const previous = await flipCurrent(o.hostRoot, o.version);
  const switched = previous !== o.version;
  if (unitChanged) await o.systemctl(['daemon-reload'], signal);
  await o.systemctl(['enable', UNIT_NAME], signal);
  // `start` is a no-op on a running berthd; a new version or unit needs a restart.
  await o.systemctl([switched || unitChanged ? 'restart' : 'start', UNIT_NAME], signal);
  const failure = await answers(o.hostRoot, o.waitMs);
  if (failure === undefined) {
    o.log.info({ version: o.version, previous }, 'berthd is serving');
    return;
  }
  if (previous && previous !== o.version) {
    await flipCurrent(o.hostRoot, previous);
    await o.systemctl(['restart', UNIT_NAME], signal);
    // The previous version is known to work: give it at least a minute to come back.
    const back = await answers(o.hostRoot, Math.max(o.waitMs, 60_000));
    const outcome = back === undefined ? `${previous} serves again` : `${previous} does not answer either (${back})`;
    throw new Error(`berthd ${o.version} did not answer CRI Status within ${o.waitMs / 1000} s (${failure}); switched back to ${previous}: ${outcome}`);
  }
  throw new Error(`berthd ${o.version} did not answer CRI Status within ${o.waitMs / 1000} s (${failure}); see journalctl -u berthd on the node`);
}

/** Removes berthd's unit and files; keeps /var/lib/berth (images) and /etc/berth (config). */
export async function uninstall(o: Pick<InstallOptions, 'hostRoot' | 'systemctl' | 'log'>, signal: AbortSignal): Promise<void> {
  const unitPath = join(o.hostRoot, 'etc/systemd/system', UNIT_NAME);
  if (await exists(unitPath)) {
    await o.systemctl(['disable', '--now', UNIT_NAME], signal);
    await rm(unitPath, { force: true });
    await o.systemctl(['daemon-reload'], signal);
  }
  await rm(join(o.hostRoot, OPT), { recursive: true, force: true });
  o.log.info('berth removed from the host; /var/lib/berth and /etc/berth are kept');
}
