// The installer's one outside process: the host's systemctl. The berth image carries a static
// busybox and runs `busybox chroot HOST systemctl …`: the host's own systemctl, in the host's
// filesystem, reaches the host's systemd through its private socket under /run/systemd, so the
// installer needs neither hostPID (as nsenter would) nor a systemctl of its own.
import { execFile } from 'node:child_process';

export interface Systemctl {
  (args: string[], signal: AbortSignal): Promise<string>;
}

/** `command` is the argv prefix that runs the host's systemctl (tests pass a recorder). */
export function hostSystemctl(command: string[], timeoutMs = 60_000): Systemctl {
  const [file, ...prefix] = command;
  if (!file) throw new Error('the systemctl command is empty');
  return (args, signal) =>
    new Promise((resolve, reject) => {
      execFile(file, [...prefix, ...args], { signal, timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
        if (err) reject(new Error(`systemctl ${args.join(' ')} failed: ${stderr.trim() || err.message}; check the host's systemd (journalctl -u berthd)`));
        else resolve(stdout);
      });
    });
}
