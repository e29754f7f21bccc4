// Usage figures of one cgroup (CPU, memory, processes) read from cgroup v1 or v2 files, computed the
// way the kubelet expects them (working set = usage minus inactive file pages).
import { readFile } from 'node:fs/promises';
import { errnoCode, notFound } from '../util/errors.ts';
import { cgroupDir } from './path.ts';
import { cgroupVersion } from './version.ts';

export interface CgroupStats {
  /** When the figures were read: nanoseconds since the epoch, the CRI's unit (millisecond precision). */
  timestamp: number;
  cpu: { usageNanos: number };
  memory: {
    usage: number;
    workingSet: number;
    rss: number;
    pageFaults: number;
    majorPageFaults: number;
    /** Absent when unlimited. */
    limit?: number;
  };
  pids: { current: number };
}

export interface CgroupOptions {
  version?: 1 | 2;
  root?: string;
}

/** v1 reports "no limit" as the largest page-aligned signed 64-bit value; anything this big is unlimited. */
const V1_UNLIMITED = 2 ** 62;

/** Reads the cgroup's figures; a controller file that is absent (controller not mounted) reads as 0. */
export async function readCgroupStats(cgroupsPath: string, opts: CgroupOptions = {}): Promise<CgroupStats> {
  const root = opts.root ?? '/sys/fs/cgroup';
  const version = opts.version ?? (await cgroupVersion(root));
  const timestamp = Date.now() * 1e6;
  return version === 2 ? readV2(root, cgroupsPath, timestamp) : readV1(root, cgroupsPath, timestamp);
}

async function readV1(root: string, path: string, timestamp: number): Promise<CgroupStats> {
  const mem = cgroupDir(root, path, 'memory');
  const usageText = await readOptional(`${mem}/memory.usage_in_bytes`);
  if (usageText === undefined) throw notFound(`cgroup ${path} does not exist (no ${mem})`);
  const [cpuText, statText, limitText, pidsText] = await Promise.all([
    readOptional(`${cgroupDir(root, path, 'cpuacct')}/cpuacct.usage`),
    readOptional(`${mem}/memory.stat`),
    readOptional(`${mem}/memory.limit_in_bytes`),
    readOptional(`${cgroupDir(root, path, 'pids')}/pids.current`),
  ]);
  const stat = parseFlatKeyed(statText ?? '');
  const usage = toNumber(usageText);
  const limit = toNumber(limitText);
  return {
    timestamp,
    cpu: { usageNanos: toNumber(cpuText) },
    memory: {
      usage,
      workingSet: workingSet(usage, stat.get('total_inactive_file') ?? 0),
      rss: stat.get('total_rss') ?? 0,
      pageFaults: stat.get('total_pgfault') ?? 0,
      majorPageFaults: stat.get('total_pgmajfault') ?? 0,
      ...(limit > 0 && limit < V1_UNLIMITED ? { limit } : {}),
    },
    pids: { current: toNumber(pidsText) },
  };
}

async function readV2(root: string, path: string, timestamp: number): Promise<CgroupStats> {
  const dir = cgroupDir(root, path);
  const usageText = await readOptional(`${dir}/memory.current`);
  const cpuText = await readOptional(`${dir}/cpu.stat`);
  if (usageText === undefined && cpuText === undefined) throw notFound(`cgroup ${path} does not exist (no ${dir})`);
  const [statText, maxText, pidsText] = await Promise.all([
    readOptional(`${dir}/memory.stat`),
    readOptional(`${dir}/memory.max`),
    readOptional(`${dir}/pids.current`),
  ]);
  const stat = parseFlatKeyed(statText ?? '');
  const usage = toNumber(usageText);
  const max = (maxText ?? 'max').trim();
  return {
    timestamp,
    cpu: { usageNanos: (parseFlatKeyed(cpuText ?? '').get('usage_usec') ?? 0) * 1000 },
    memory: {
      usage,
      workingSet: workingSet(usage, stat.get('inactive_file') ?? 0),
      rss: stat.get('anon') ?? 0,
      pageFaults: stat.get('pgfault') ?? 0,
      majorPageFaults: stat.get('pgmajfault') ?? 0,
      ...(max !== 'max' && max !== '' ? { limit: toNumber(max) } : {}),
    },
    pids: { current: toNumber(pidsText) },
  };
}

/** The kubelet's working set: what would not be reclaimed first under pressure. */
function workingSet(usage: number, inactiveFile: number): number {
  return inactiveFile < usage ? usage - inactiveFile : 0;
}

/** "key value" lines (memory.stat, cpu.stat) into a map. */
function parseFlatKeyed(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value !== undefined && /^\d+$/.test(value)) out.set(key, Number(value));
  }
  return out;
}

function toNumber(text: string | undefined): number {
  const n = Number((text ?? '').trim());
  return Number.isFinite(n) ? n : 0;
}

/** A cgroup file's text, or undefined when the file (or its cgroup) is not there. */
async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENODEV') return undefined;
    throw err;
  }
}
