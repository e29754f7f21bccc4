// Moving the kubelet onto berth and back. The work runs in a transient host unit (systemd-run):
// removing the old runtime's pods kills the pod that asked, so nothing in a pod can finish it.
// `apply` steps, in order: back up, edit, stop the kubelet, remove the old runtime's pods, start
// the kubelet. A rerun after a kill at any step converges; `revert` restores the backup.
import type { Logger } from 'pino';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { errorMessage, failedPrecondition } from '../util/errors.ts';
import { hostPaths, onHost } from './host.ts';
import type { HostSystemd } from './host-systemd.ts';
import { isUnitFile, planKubeletSwitch } from './kubelet-config.ts';
import { readBackup, restoreBackup, saveBackup } from './kubelet-backup.ts';
import { removeAllPods, socketOf } from './old-pods.ts';
import { waitHealthy } from './health.ts';

const BERTH_ENDPOINT = 'unix:///run/berth/berth.sock';
export const SWITCH_STEPS = ['backup', 'edit', 'stop-kubelet', 'remove-pods', 'start-kubelet'] as const;
export type SwitchStep = (typeof SWITCH_STEPS)[number];

export interface SwitchOptions {
  hostRoot: string;
  systemd: HostSystemd;
  log: Logger;
  /** berthd's socket as this process reaches it; must answer before the kubelet is moved. */
  socket: string;
  version: string;
  healthTimeoutMs: number;
  crashAfter?: SwitchStep;
  signal?: AbortSignal;
}

/**
 * Starts `berth-install <verb> --apply` from /opt/berth/current in a transient host unit named
 * `berth-<verb>` (`journalctl -u berth-switch` shows how it went; --collect removes it after).
 */
export async function launchOnHost(systemd: HostSystemd, verb: 'switch' | 'revert' | 'uninstall', signal?: AbortSignal): Promise<void> {
  const args = [verb, '--apply', '--host-root', '/', ...(verb === 'switch' ? ['--drained'] : [])];
  await systemd.systemdRun(
    `start the berth-${verb} unit`,
    ['--unit', `berth-${verb}`, '--collect', '--quiet', '--', '/opt/berth/current/bin/node', '/opt/berth/current/lib/berth-install.js', ...args],
    signal,
  );
}

export async function applySwitch(o: SwitchOptions): Promise<void> {
  const paths = hostPaths(o.hostRoot);
  const done = (step: SwitchStep, detail: Record<string, unknown> = {}): void => {
    o.log.info({ step, ...detail }, `switch: ${step} done`);
    if (o.crashAfter === step) process.kill(process.pid, 'SIGKILL');
  };
  const why = await waitHealthy(o.socket, o.version, o.healthTimeoutMs, o.signal);
  if (why !== undefined) throw failedPrecondition(`berthd is not healthy (${why}); the kubelet stays on its runtime`);

  const plan = await planKubeletSwitch(o.hostRoot, BERTH_ENDPOINT);
  const backup = await saveBackup(o.hostRoot, paths.installerState, plan.edits, plan.oldEndpoint, plan.unit);
  done('backup', { files: backup.files.map((f) => f.path), oldEndpoint: backup.oldEndpoint, unit: backup.unit });

  try {
    for (const e of plan.edits) await writeFileAtomic(onHost(o.hostRoot, e.path), e.after, backup.files.find((f) => f.path === e.path)?.mode ?? 0o644);
    // Decided by the backup, not this run's edits: a rerun after a kill finds the drop-in edited already.
    if (backup.files.some((f) => isUnitFile(f.path))) await o.systemd.systemctl('reload systemd units', ['daemon-reload'], o.signal);
    done('edit', { files: plan.edits.map((e) => e.path) });

    // Stopped first: a running kubelet would start the removed pods again on the old runtime.
    await o.systemd.systemctl('stop the kubelet', ['stop', backup.unit], o.signal);
    done('stop-kubelet');

    if (backup.oldEndpoint !== BERTH_ENDPOINT) {
      done('remove-pods', { removed: await removeAllPods(onHost(o.hostRoot, socketOf(backup.oldEndpoint)), o.log, o.signal) });
    } else done('remove-pods', { removed: 0 });

    await o.systemd.systemctl('start the kubelet', ['start', backup.unit], o.signal);
    done('start-kubelet');
  } catch (err) {
    // Never leave a node with a stopped or half-moved kubelet: put back what was there.
    o.log.error({ err }, 'switch failed; restoring the kubelet');
    await applyRevert(o);
    throw failedPrecondition(`switching the kubelet to berth failed and was reverted: ${errorMessage(err)}`);
  }
}

/** Restores the kubelet's files and restarts it; false when there was nothing to restore. */
export async function applyRevert(o: Pick<SwitchOptions, 'hostRoot' | 'systemd' | 'log' | 'signal'>): Promise<boolean> {
  const paths = hostPaths(o.hostRoot);
  const backup = await readBackup(paths.installerState);
  if (!backup) {
    o.log.info('revert: the kubelet was not switched (no backup); nothing to restore');
    return false;
  }
  const restored = await restoreBackup(o.hostRoot, paths.installerState, backup);
  if (restored.some(isUnitFile)) await o.systemd.systemctl('reload systemd units', ['daemon-reload'], o.signal);
  // A stop and a start, not a restart: the same calls as the switch, in the same order.
  await o.systemd.systemctl('stop the kubelet', ['stop', backup.unit], o.signal);
  await o.systemd.systemctl('start the kubelet', ['start', backup.unit], o.signal);
  o.log.info({ restored, endpoint: backup.oldEndpoint }, 'revert: kubelet restored');
  return true;
}

/** Whether the kubelet is on berth (a backup exists): then uninstalling must revert it first. */
export async function isSwitched(hostRoot: string): Promise<boolean> {
  return (await readBackup(hostPaths(hostRoot).installerState)) !== undefined;
}
