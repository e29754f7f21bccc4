// Where berth lives on a node, every path under one host root: `/` on a node, the hostPath mount
// (`/host`) in the init container, a temp dir in tests.
import { join } from 'node:path';

export interface HostPaths {
  /** /opt/berth: one directory per version, `current` → the one berthd runs. */
  opt: string;
  /** /etc/systemd/system/berthd.service */
  unit: string;
  /** /etc/berth/config.toml, written only when absent. */
  config: string;
  /** /var/lib/berth/installer: the kubelet backup and the installer's own records. */
  installerState: string;
}

export const UNIT_NAME = 'berthd.service';
export const KUBELET_UNIT = 'kubelet.service';

/** Joins a host-absolute path onto the host root. */
export function onHost(root: string, hostPath: string): string {
  return join(root, hostPath);
}

export function hostPaths(root: string): HostPaths {
  return {
    opt: onHost(root, '/opt/berth'),
    unit: onHost(root, `/etc/systemd/system/${UNIT_NAME}`),
    config: onHost(root, '/etc/berth/config.toml'),
    installerState: onHost(root, '/var/lib/berth/installer'),
  };
}
