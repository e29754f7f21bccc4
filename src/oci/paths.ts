// Which /proc and /sys paths a container sees masked (an empty file or directory over them) or
// read-only: the defaults containerd and CRI-O use, and the CRI's say in it.
import { isAbsolute } from 'node:path';
import { invalidArgument } from '../util/errors.ts';

/** Paths that leak host information or kernel state: hidden from unprivileged containers. */
export const DEFAULT_MASKED_PATHS: readonly string[] = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/interrupts',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/sys/devices/virtual/powercap',
  '/sys/firmware',
];

/** Kernel knobs a container may read but not write. */
export const DEFAULT_READONLY_PATHS: readonly string[] = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/**
 * The masked and read-only paths for a container. Privileged: none (it may touch the host anyway).
 * Otherwise the CRI's lists replace the defaults when given. An empty list means "not given": proto3
 * cannot tell it from an absent field, and reading it as "unmask everything" would open /proc/kcore
 * to every client that simply leaves the field out (containerd reads it the same way).
 */
export function protectedPaths(opts: {
  privileged: boolean;
  maskedPaths?: readonly string[];
  readonlyPaths?: readonly string[];
}): { maskedPaths: string[]; readonlyPaths: string[] } {
  if (opts.privileged) return { maskedPaths: [], readonlyPaths: [] };
  const pick = (field: string, given: readonly string[] | undefined, fallback: readonly string[]): string[] => {
    if (!given || given.length === 0) return [...fallback];
    const bad = given.find((p) => !isAbsolute(p));
    if (bad !== undefined) throw invalidArgument(`${field}: ${JSON.stringify(bad)} is not an absolute path`);
    return [...new Set(given)];
  };
  return {
    maskedPaths: pick('masked_paths', opts.maskedPaths, DEFAULT_MASKED_PATHS),
    readonlyPaths: pick('readonly_paths', opts.readonlyPaths, DEFAULT_READONLY_PATHS),
  };
}
