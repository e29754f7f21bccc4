// Container and pod usage in the CRI's shapes, shared by the four stats RPCs.
import type { ContainerRecord } from '../container/record.ts';
import type { SandboxRecord } from '../sandbox/record.ts';
import type { CgroupStats } from '../cgroups/stats.ts';
import type { ContainerStats } from './gen/runtime/v1/ContainerStats.ts';
import type { PodSandboxStats } from './gen/runtime/v1/PodSandboxStats.ts';
import type { CriContext } from './rpc.ts';

const u64 = (value: number): { value: number } => ({ value });

function cpuMemory(cg: CgroupStats | undefined, timestamp: number): Pick<ContainerStats, 'cpu' | 'memory'> {
  if (!cg) return { cpu: { timestamp, usage_core_nano_seconds: u64(0) }, memory: { timestamp, working_set_bytes: u64(0) } };
  return {
    cpu: { timestamp: cg.timestamp, usage_core_nano_seconds: u64(cg.cpu.usageNanos) },
    memory: {
      timestamp: cg.timestamp,
      working_set_bytes: u64(cg.memory.workingSet),
      usage_bytes: u64(cg.memory.usage),
      rss_bytes: u64(cg.memory.rss),
      page_faults: u64(cg.memory.pageFaults),
      major_page_faults: u64(cg.memory.majorPageFaults),
      ...(cg.memory.limit !== undefined ? { available_bytes: u64(Math.max(0, cg.memory.limit - cg.memory.workingSet)) } : {}),
    },
  };
}

export async function containerStats(ctx: CriContext, c: ContainerRecord, signal?: AbortSignal): Promise<ContainerStats> {
  const s = await ctx.containers.stats(c, signal);
  return {
    attributes: { id: c.id, metadata: c.config.metadata, labels: c.config.labels, annotations: c.config.annotations },
    ...cpuMemory(s.cgroup, s.timestamp),
    writable_layer: {
      timestamp: s.timestamp,
      fs_id: { mountpoint: ctx.containers.layerRoot },
      used_bytes: u64(s.writable.bytes),
      inodes_used: u64(s.writable.inodes),
    },
  };
}

/** A pod's usage: the sum of its containers' cgroups, its network interfaces and process count. */
export async function podSandboxStats(ctx: CriContext, sb: SandboxRecord, signal?: AbortSignal): Promise<PodSandboxStats> {
  const mine = ctx.containers.list().filter((c) => c.sandboxId === sb.id);
  const per = await Promise.all(mine.map(async (c) => ({ c, s: await ctx.containers.stats(c, signal) })));
  const timestamp = Date.now() * 1e6;
  const sum = (f: (cg: CgroupStats) => number): number => per.reduce((n, { s }) => n + (s.cgroup ? f(s.cgroup) : 0), 0);
  const ifaces = await ctx.sandboxes.interfaceStats(sb, signal).catch(() => []);
  const toIface = (i: (typeof ifaces)[number]) => ({ name: i.name, rx_bytes: u64(i.rxBytes), rx_errors: u64(i.rxErrors), tx_bytes: u64(i.txBytes), tx_errors: u64(i.txErrors) });
  const eth0 = ifaces.find((i) => i.name === 'eth0');
  return {
    attributes: { id: sb.id, metadata: sb.config.metadata, labels: sb.config.labels, annotations: sb.config.annotations },
    linux: {
      cpu: { timestamp, usage_core_nano_seconds: u64(sum((cg) => cg.cpu.usageNanos)) },
      memory: {
        timestamp,
        working_set_bytes: u64(sum((cg) => cg.memory.workingSet)),
        usage_bytes: u64(sum((cg) => cg.memory.usage)),
        rss_bytes: u64(sum((cg) => cg.memory.rss)),
        page_faults: u64(sum((cg) => cg.memory.pageFaults)),
        major_page_faults: u64(sum((cg) => cg.memory.majorPageFaults)),
      },
      network: { timestamp, ...(eth0 ? { default_interface: toIface(eth0) } : {}), interfaces: ifaces.map(toIface) },
      process: { timestamp, process_count: u64(sum((cg) => cg.pids.current)) },
      containers: await Promise.all(mine.map((c) => containerStats(ctx, c, signal))),
    },
  };
}
