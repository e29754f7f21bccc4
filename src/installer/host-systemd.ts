// Runs the host's systemctl and systemd-run. In the init container that means entering the mount
// namespace of the host's PID 1 (`nsenter --mount=<host root>/proc/1/ns/mnt`), so the host's own
// tools talk to the host's own systemd whatever its version; tests pass a program of their own that
// records the calls. Each call has a deadline and says which step failed.
import { runCommand } from '../util/run-command.ts';
import { onHost } from './host.ts';

export interface HostSystemd {
  /** `systemctl ARGS` on the host; `step` names what it is for in errors. */
  systemctl(step: string, args: string[], signal?: AbortSignal): Promise<void>;
  /** `systemd-run ARGS` on the host: a transient unit that outlives the pod that asked for it. */
  systemdRun(step: string, args: string[], signal?: AbortSignal): Promise<void>;
}

const CALL_TIMEOUT_MS = 120_000;

/**
 * `exec` given: `exec systemctl ARGS` / `exec systemd-run ARGS` (tests record them; an operator can
 * point it at a wrapper). Otherwise nsenter into the mount namespace of the host's PID 1, read
 * through the host root's /proc, which needs no hostPID on the pod, only the privilege to setns.
 */
export function hostSystemd(hostRoot: string, exec?: string): HostSystemd {
  const run = async (tool: string, step: string, args: string[], signal?: AbortSignal): Promise<void> => {
    const [cmd, argv] = exec ? [exec, [tool, ...args]] : ['nsenter', [`--mount=${onHost(hostRoot, '/proc/1/ns/mnt')}`, '--', tool, ...args]];
    await runCommand(cmd, argv, { step, timeoutMs: CALL_TIMEOUT_MS, signal });
  };
  return {
    systemctl: (step, args, signal) => run('systemctl', step, args, signal),
    systemdRun: (step, args, signal) => run('systemd-run', step, args, signal),
  };
}
