// The files every container of a pod shares: /etc/hostname, /etc/hosts and /etc/resolv.conf, kept
// in the sandbox's directory and bind-mounted into each container.
import { readFile, writeFile } from 'node:fs/promises';
import { hostname as hostHostname } from 'node:os';
import { join } from 'node:path';
import type { DNSConfig__Output } from '../cri/gen/runtime/v1/DNSConfig.ts';
import { invalidArgument } from '../util/errors.ts';

export function resolvConf(dns: DNSConfig__Output): string {
  const lines = [
    ...(dns.searches.length > 0 ? [`search ${dns.searches.join(' ')}`] : []),
    ...dns.servers.map((s) => `nameserver ${s}`),
    ...(dns.options.length > 0 ? [`options ${dns.options.join(' ')}`] : []),
  ];
  return `${lines.join('\n')}\n`;
}

/** Refuses a DNSConfig that resolv.conf cannot hold (before anything of the pod is made). */
export function checkDns(dns: DNSConfig__Output | null): void {
  if (dns?.searches.some((s) => /\s/.test(s)) || dns?.servers.some((s) => /\s/.test(s))) {
    throw invalidArgument('dns_config: servers and searches must not contain spaces');
  }
}

export async function writePodFiles(dir: string, opts: { hostname: string; hostNetwork: boolean; dns: DNSConfig__Output | null }): Promise<void> {
  const name = opts.hostNetwork ? hostHostname() : opts.hostname;
  await writeFile(join(dir, 'hostname'), `${name}\n`, { mode: 0o644 });
  const hosts = opts.hostNetwork
    ? await readFile('/etc/hosts', 'utf8').catch(() => '127.0.0.1\tlocalhost\n')
    : `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
  await writeFile(join(dir, 'hosts'), hosts, { mode: 0o644 });
  const hasDns = opts.dns && (opts.dns.servers.length > 0 || opts.dns.searches.length > 0 || opts.dns.options.length > 0);
  const resolv = hasDns && opts.dns ? resolvConf(opts.dns) : await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  await writeFile(join(dir, 'resolv.conf'), resolv, { mode: 0o644 });
}
