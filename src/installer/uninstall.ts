// Removing berth from a node, only ever on request (never on SIGTERM: rolling updates send it):
// the kubelet is reverted first if it was switched, then berthd is stopped and its unit and
// /opt/berth removed. /var/lib/berth (images, the kubelet backup's leftovers) and /etc/berth stay.
import { rm } from 'node:fs/promises';
import type { Logger } from 'pino';
import { hostPaths, UNIT_NAME } from './host.ts';
import type { HostSystemd } from './host-systemd.ts';
import { applyRevert } from './kubelet-switch.ts';

export async function uninstall(o: { hostRoot: string; systemd: HostSystemd; log: Logger; signal?: AbortSignal }): Promise<void> {
  const paths = hostPaths(o.hostRoot);
  await applyRevert(o);
  // `disable --now` stops and disables in one call; a unit already gone is not an error.
  await o.systemd.systemctl('stop and disable berthd', ['disable', '--now', UNIT_NAME], o.signal).catch((err: unknown) => {
    o.log.warn({ err }, 'uninstall: berthd could not be disabled (already removed?)');
  });
  await rm(paths.unit, { force: true });
  await o.systemd.systemctl('reload systemd units', ['daemon-reload'], o.signal);
  await rm(paths.opt, { recursive: true, force: true });
  o.log.info('uninstall: berthd removed; /var/lib/berth and /etc/berth kept');
}
