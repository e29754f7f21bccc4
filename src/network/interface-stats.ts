// Byte and error counters of a pod's interfaces, read from /proc/net/dev inside its netns.
//
// /proc/net is per network namespace of the reading process, so one `nsenter --net=PATH cat
// /proc/net/dev` (~4 ms) reads every interface at once; `ip -s link` through nsenter costs the
// same spawn and more parsing, and /sys/class/net would need a mount namespace of its own.
import { runCommand } from '../util/run-command.ts';

export interface InterfaceStats {
  name: string;
  rxBytes: number;
  rxErrors: number;
  txBytes: number;
  txErrors: number;
}

/** Parses /proc/net/dev; loopback is left out (it is not the pod's network traffic). */
export function parseProcNetDev(text: string): InterfaceStats[] {
  const stats: InterfaceStats[] = [];
  for (const line of text.split('\n').slice(2)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    // Receive: bytes packets errs drop fifo frame compressed multicast; Transmit: bytes packets errs …
    const f = line.slice(colon + 1).trim().split(/\s+/).map(Number);
    if (name === 'lo' || f.length < 16 || f.some((n) => !Number.isFinite(n))) continue;
    stats.push({ name, rxBytes: f[0] as number, rxErrors: f[2] as number, txBytes: f[8] as number, txErrors: f[10] as number });
  }
  return stats;
}

export async function readInterfaceStats(netnsPath: string, signal?: AbortSignal): Promise<InterfaceStats[]> {
  const out = await runCommand('nsenter', [`--net=${netnsPath}`, 'cat', '/proc/net/dev'], {
    step: `read interface counters in ${netnsPath}`,
    timeoutMs: 10_000,
    signal,
  });
  return parseProcNetDev(out.stdout);
}
