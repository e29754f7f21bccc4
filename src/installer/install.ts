// Install or upgrade berthd on a node, from the init container: copy the release, flip `current`,
// write the unit (and a first config), restart berthd through the host's systemd, and wait until
// the new berthd answers. If it does not, flip back, restart the old one and fail, so the
// DaemonSet's rollout stops at this node. Every step can be killed and the whole rerun.
import type { Logger } from 'pino';
import { readFile } from 'node:fs/promises';
import { failedPrecondition } from '../util/errors.ts';
import { hostPaths, UNIT_NAME } from './host.ts';
import type { HostSystemd } from './host-systemd.ts';
import { currentVersion, flipCurrent, installRelease, pruneVersions, readPrevious, writePrevious } from './release.ts';
import { writeConfigIfAbsent, writeUnit } from './unit.ts';
import { waitHealthy } from './health.ts';

/** The steps in order; `crashAfter` (tests, via BERTH_INSTALL_CRASH_AFTER) kills the process after one. */
export const INSTALL_STEPS = ['copy', 'previous', 'flip', 'unit', 'reload', 'restart', 'healthy', 'prune'] as const;
export type InstallStep = (typeof INSTALL_STEPS)[number];

export interface InstallOptions {
  hostRoot: string;
  version: string;
  /** Directory holding bin/node and lib/ (the image's /berth). */
  source: string;
  /** config.toml written when the node has none; berthd's defaults when absent. */
  configTemplate?: string;
  /** berthd's socket as this process reaches it. */
  socket: string;
  healthTimeoutMs: number;
  /** Version directories kept after a healthy upgrade, the running one included. */
  keep: number;
  systemd: HostSystemd;
  log: Logger;
  crashAfter?: InstallStep;
  signal?: AbortSignal;
}

export async function install(o: InstallOptions): Promise<void> {
  const paths = hostPaths(o.hostRoot);
  const done = (step: InstallStep, detail: Record<string, unknown> = {}): void => {
    o.log.info({ step, ...detail }, `install: ${step} done`);
    if (o.crashAfter === step) process.kill(process.pid, 'SIGKILL');
  };

  const copied = (await installRelease(paths.opt, o.version, o.source)) === 'copied';
  done('copy', { copied, dir: `/opt/berth/${o.version}` });

  const current = await currentVersion(paths.opt);
  // A rerun after the flip finds `current` already moved: the marker written before it still
  // names the version to go back to.
  if (current !== o.version) await writePrevious(paths.opt, current);
  const previous = await readPrevious(paths.opt);
  done('previous', { previous: previous ?? null });

  await flipCurrent(paths.opt, o.version);
  done('flip', { current: o.version });

  const template = o.configTemplate === undefined ? '' : await readFile(o.configTemplate, 'utf8');
  const unit = await writeUnit(paths.unit);
  done('unit', { unit, config: await writeConfigIfAbsent(paths.config, template) });

  await o.systemd.systemctl('reload systemd units', ['daemon-reload'], o.signal);
  await o.systemd.systemctl('enable berthd', ['enable', UNIT_NAME], o.signal);
  done('reload');

  // A rerun on a node already serving this version (the init container runs again after every
  // reboot or pod restart) only makes sure berthd runs. Anything new, or an upgrade not yet proven
  // (the marker), restarts it: a kill after the flip must not leave the old berthd serving.
  const restart = copied || unit === 'written' || current !== o.version || previous !== undefined;
  await o.systemd.systemctl(restart ? 'restart berthd' : 'start berthd', [restart ? 'restart' : 'start', UNIT_NAME], o.signal);
  done('restart', { restart });

  const why = await waitHealthy(o.socket, o.version, o.healthTimeoutMs, o.signal);
  if (why !== undefined) {
    const base = `berthd ${o.version} did not become healthy within ${o.healthTimeoutMs} ms (${why})`;
    if (previous === undefined) throw failedPrecondition(`${base}; nothing to roll back to. See \`journalctl -u berthd\` on the node.`);
    await flipCurrent(paths.opt, previous);
    await writePrevious(paths.opt, undefined);
    await o.systemd.systemctl('restart the previous berthd', ['restart', UNIT_NAME], o.signal);
    // Say whether the node has a runtime again: that decides how urgent the operator's visit is.
    const back = await waitHealthy(o.socket, previous, o.healthTimeoutMs, o.signal);
    const outcome = back === undefined ? `${previous} serves again` : `${previous} does not answer either (${back})`;
    o.log.error({ version: o.version, previous, outcome }, 'install: rolled back');
    throw failedPrecondition(`${base}; rolled back: ${outcome}. See \`journalctl -u berthd\` on the node.`);
  }
  done('healthy');

  await writePrevious(paths.opt, undefined);
  const removed = await pruneVersions(paths.opt, o.keep, new Set([o.version]));
  done('prune', { removed });
}
