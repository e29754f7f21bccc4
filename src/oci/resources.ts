// Cgroup resource limits for a container from the CRI's LinuxContainerResources, checked for values
// the kernel would refuse, and the oom_score_adj floor of this host.
import { execFile } from 'node:child_process';
import type { LinuxContainerResources__Output } from '../cri/gen/runtime/v1/LinuxContainerResources.ts';
import { errorMessage, invalidArgument, unavailable } from '../util/errors.ts';
import type { OciLinuxResources } from './types.ts';

/** cpu.shares range (v1); runc maps it onto cpu.weight on v2. */
const MAX_SHARES = 262144;
/** CFS period and quota bounds in microseconds (1 ms .. 1 s for the period). */
const MIN_CFS_US = 1000;
const MAX_PERIOD_US = 1_000_000;
const CPU_LIST_RE = /^\d+(-\d+)?(,\d+(-\d+)?)*$/;
const PAGE_SIZE_RE = /^(\d+)(KB|MB|GB)$/;

/**
 * OCI resources for the CRI's request. Zero means "not set" for every number, as the kubelet sends
 * it. Memory swap follows containerd: no swap unless memory_swap_limit_in_bytes says otherwise
 * (OCI's swap is memory + swap). `unified` is cgroup v2 only.
 */
export function linuxResources(r: LinuxContainerResources__Output | null | undefined, opts: { cgroupVersion: 1 | 2 }): OciLinuxResources {
  const out: OciLinuxResources = {};
  if (!r) return out;
  const bad = (field: string, why: string): never => {
    throw invalidArgument(`resources.${field}: ${why}`);
  };

  const cpu: NonNullable<OciLinuxResources['cpu']> = {};
  if (r.cpu_shares < 0 || r.cpu_shares > MAX_SHARES) bad('cpu_shares', `${r.cpu_shares} is outside 0..${MAX_SHARES}`);
  if (r.cpu_shares > 0) cpu.shares = r.cpu_shares;
  if (r.cpu_period !== 0) {
    if (r.cpu_period < MIN_CFS_US || r.cpu_period > MAX_PERIOD_US) {
      bad('cpu_period', `${r.cpu_period} µs is outside ${MIN_CFS_US}..${MAX_PERIOD_US} µs`);
    }
    cpu.period = r.cpu_period;
  }
  if (r.cpu_quota !== 0) {
    // -1 is the kernel's "no limit".
    if (r.cpu_quota !== -1) {
      if (r.cpu_quota < MIN_CFS_US) bad('cpu_quota', `${r.cpu_quota} µs is below the kernel's minimum of ${MIN_CFS_US} µs (or -1 for no limit)`);
      if (r.cpu_period === 0) bad('cpu_quota', `a quota of ${r.cpu_quota} µs needs cpu_period too`);
    }
    cpu.quota = r.cpu_quota;
  }
  if (r.cpuset_cpus) cpu.cpus = cpuList(r.cpuset_cpus, 'cpuset_cpus', bad);
  if (r.cpuset_mems) cpu.mems = cpuList(r.cpuset_mems, 'cpuset_mems', bad);
  if (Object.keys(cpu).length > 0) out.cpu = cpu;

  if (r.memory_limit_in_bytes < 0) bad('memory_limit_in_bytes', `${r.memory_limit_in_bytes} is negative`);
  if (r.memory_swap_limit_in_bytes < -1) bad('memory_swap_limit_in_bytes', `${r.memory_swap_limit_in_bytes} is negative`);
  if (r.memory_limit_in_bytes > 0) {
    let swap = r.memory_limit_in_bytes;
    if (r.memory_swap_limit_in_bytes !== 0) {
      if (r.memory_swap_limit_in_bytes !== -1 && r.memory_swap_limit_in_bytes < r.memory_limit_in_bytes) {
        bad(
          'memory_swap_limit_in_bytes',
          `${r.memory_swap_limit_in_bytes} is below memory_limit_in_bytes ${r.memory_limit_in_bytes} (it counts memory plus swap)`,
        );
      }
      swap = r.memory_swap_limit_in_bytes;
    }
    out.memory = { limit: r.memory_limit_in_bytes, swap };
  } else if (r.memory_swap_limit_in_bytes !== 0) {
    bad('memory_swap_limit_in_bytes', 'a swap limit needs memory_limit_in_bytes too');
  }

  if (r.hugepage_limits.length > 0) {
    const seen = new Set<string>();
    out.hugepageLimits = r.hugepage_limits.map((h) => {
      const m = PAGE_SIZE_RE.exec(h.page_size);
      if (!m || Number(m[1]) <= 0) bad('hugepage_limits', `page size ${JSON.stringify(h.page_size)} is not like "2MB" or "1GB"`);
      if (seen.has(h.page_size)) bad('hugepage_limits', `page size ${h.page_size} is given twice`);
      seen.add(h.page_size);
      if (h.limit < 0) bad('hugepage_limits', `limit ${h.limit} for ${h.page_size} is negative`);
      return { pageSize: h.page_size, limit: h.limit };
    });
  }

  const unified = Object.entries(r.unified ?? {});
  if (unified.length > 0) {
    if (opts.cgroupVersion !== 2) bad('unified', 'is for cgroup v2, and this node runs cgroup v1');
    for (const [key] of unified) {
      if (!/^[a-z0-9_]+\.[a-z0-9_.]+$/.test(key)) bad('unified', `${JSON.stringify(key)} is not a cgroup v2 file name like "memory.high"`);
    }
    out.unified = Object.fromEntries(unified);
  }
  return out;
}

/** Validates a cpuset list ("0-3,6"): ranges must run upwards. */
function cpuList(list: string, field: string, bad: (field: string, why: string) => never): string {
  const trimmed = list.replace(/\s+/g, '');
  if (!CPU_LIST_RE.test(trimmed)) bad(field, `${JSON.stringify(list)} is not a list like "0-3,6"`);
  for (const part of trimmed.split(',')) {
    const [from, to] = part.split('-').map(Number);
    if (to !== undefined && (from as number) > to) bad(field, `range ${part} runs backwards`);
  }
  return trimmed;
}

/**
 * The lowest oom_score_adj a container can get here. A throwaway shell tries to set its own score
 * to -1000 and reports what it ended up with, so berthd's own score never changes; hosts (and
 * sandboxes such as this VM) that refuse negative values leave it at berthd's current score.
 */
export async function hostOomScoreAdjFloor(signal?: AbortSignal): Promise<number> {
  const script = 'echo -1000 > /proc/self/oom_score_adj 2>/dev/null; cat /proc/self/oom_score_adj';
  const out = await new Promise<string>((resolve, reject) => {
    execFile('/bin/sh', ['-c', script], { timeout: 5000, signal }, (err, stdout) => {
      if (err) reject(unavailable(`probing the host's oom_score_adj floor failed: ${errorMessage(err)}`, err));
      else resolve(stdout);
    });
  });
  const n = Number(out.trim());
  if (!Number.isInteger(n) || n < -1000 || n > 1000) throw unavailable(`probing the host's oom_score_adj floor gave ${JSON.stringify(out.trim())}`);
  return n;
}

/** The CRI's oom_score_adj (validated: -1000..1000) raised to what the host allows. */
export function clampOomScoreAdj(n: number, floor: number): number {
  if (!Number.isInteger(n) || n < -1000 || n > 1000) throw invalidArgument(`resources.oom_score_adj: ${n} is outside -1000..1000`);
  return Math.max(n, floor);
}
