// Running one CNI plugin binary for one command (ADD, DEL, CHECK) the way the CNI spec says:
// parameters in CNI_* environment variables, the network config on stdin, the result or a
// structured error on stdout.
import { access, constants } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, failedPrecondition } from '../util/errors.ts';
import { runCommand } from '../util/run-command.ts';
import type { NetworkList, PluginConf } from './cni-config.ts';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK';

export interface PluginCall {
  command: CniCommand;
  network: NetworkList;
  plugin: PluginConf;
  binDirs: readonly string[];
  containerId: string;
  /** Path of the pinned netns; '' when it is gone (allowed for DEL). */
  netns: string;
  ifName: string;
  /** `K1=V1;K2=V2` for CNI_ARGS. */
  args: string;
  /** Values for capabilities (`portMappings`, `dns`, `cgroupPath`); each goes only to plugins that declare it. */
  capabilityArgs: Record<string, unknown>;
  prevResult?: unknown;
  /**
   * When given, the plugin is started at once but gets its config (stdin) only once this resolves:
   * it cannot act before, while its start-up overlaps whatever the caller still waits for. A
   * rejection kills it unread and execPlugin rejects with that reason.
   */
  inputAfter?: Promise<unknown>;
  timeoutMs: number;
  signal?: AbortSignal;
}

/** Where the plugin's binary is, or a failure that says what to install or configure. */
export async function findPlugin(type: string, binDirs: readonly string[]): Promise<string> {
  for (const dir of binDirs) {
    const path = join(dir, type);
    try {
      await access(path, constants.X_OK);
      return path;
    } catch {
      // try the next directory
    }
  }
  throw failedPrecondition(
    `CNI plugin "${type}" not found in ${binDirs.join(', ')}: install containernetworking-plugins or set [network] cni_bin_dirs`,
  );
}

/** The stdin document: the plugin's own config plus what the runtime adds for this call. */
export function pluginStdin(call: PluginCall): string {
  return JSON.stringify(pluginConf(call));
}

function pluginConf(call: PluginCall): Record<string, unknown> {
  const conf: Record<string, unknown> = { ...call.plugin, name: call.network.name, cniVersion: call.network.cniVersion };
  const runtimeConfig: Record<string, unknown> = {};
  for (const [cap, enabled] of Object.entries(call.plugin.capabilities ?? {})) {
    if (enabled === true && call.capabilityArgs[cap] !== undefined) runtimeConfig[cap] = call.capabilityArgs[cap];
  }
  if (Object.keys(runtimeConfig).length > 0) conf.runtimeConfig = runtimeConfig;
  if (call.prevResult !== undefined) conf.prevResult = call.prevResult;
  return conf;
}

/**
 * Whether running the plugin would change nothing, so the exec (a Go binary: 5-12 ms on the 2-core
 * VM, twice per pod) can be skipped. Only one case is known for sure: `portmap` without port
 * mappings returns prevResult on ADD and succeeds on DEL without touching iptables
 * (containernetworking-plugins 1.x; checked with strace on 1.1.1). CHECK still runs it.
 */
export function isNoOp(call: PluginCall): boolean {
  // portmap refuses an ADD with no prevResult ("must be called as chained plugin"): let it say so.
  if (call.plugin.type !== 'portmap' || call.command === 'CHECK' || (call.command === 'ADD' && call.prevResult === undefined)) return false;
  const runtimeConfig = pluginConf(call).runtimeConfig as { portMappings?: unknown } | undefined;
  return !Array.isArray(runtimeConfig?.portMappings) || runtimeConfig.portMappings.length === 0;
}

/** The plugin's own words from a CNI error object on stdout, else its stderr. */
function pluginError(stdout: string, stderr: string): string {
  try {
    const e = JSON.parse(stdout) as { code?: unknown; msg?: unknown; details?: unknown };
    if (typeof e.msg === 'string') {
      return `${e.msg}${typeof e.details === 'string' && e.details ? `: ${e.details}` : ''}${typeof e.code === 'number' ? ` (CNI error ${e.code})` : ''}`;
    }
  } catch {
    // not JSON: fall through to the raw text
  }
  return (stderr.trim() || stdout.trim() || 'no output').slice(0, 2000);
}

/**
 * Runs the plugin; resolves with the parsed result for ADD (undefined for DEL and CHECK). Failures
 * are BerthErrors that name the plugin, the command and the network.
 */
export async function execPlugin(call: PluginCall): Promise<unknown> {
  const binary = await findPlugin(call.plugin.type, call.binDirs);
  if (isNoOp(call)) return call.command === 'ADD' ? call.prevResult : undefined;
  const step = `CNI plugin ${call.plugin.type} ${call.command} (network ${call.network.name})`;
  const env: NodeJS.ProcessEnv = {
    // Plugins run iptables, ip and friends, so they need a PATH; nothing else of ours leaks to them.
    PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: call.command,
    CNI_CONTAINERID: call.containerId,
    CNI_NETNS: call.netns,
    CNI_IFNAME: call.ifName,
    CNI_ARGS: call.args,
    CNI_PATH: call.binDirs.join(':'),
  };
  let out;
  try {
    const input = call.inputAfter ? call.inputAfter.then(() => pluginStdin(call)) : pluginStdin(call);
    out = await runCommand(binary, [], { step, input, env, timeoutMs: call.timeoutMs, signal: call.signal });
  } catch (err) {
    if (call.inputAfter && (await call.inputAfter.then(() => false, () => true))) throw err;
    const e = err as BerthError & { stdout?: string; stderr?: string };
    if (e.kind === 'unavailable' && (e.stdout !== undefined || e.stderr !== undefined)) {
      throw new BerthError('unavailable', `${step} failed: ${pluginError(e.stdout ?? '', e.stderr ?? '')}`, { cause: err });
    }
    throw err;
  }
  if (call.command !== 'ADD') return undefined;
  try {
    const result = JSON.parse(out.stdout) as unknown;
    if (typeof result !== 'object' || result === null) throw new Error('not an object');
    return result;
  } catch (err) {
    throw new BerthError('unavailable', `${step} returned no valid result (${(err as Error).message}): ${out.stdout.slice(0, 500)}`);
  }
}

/** IP addresses from an ADD result on the pod's interface, IPv4 first, without prefix lengths. */
export function resultIps(result: unknown, ifName: string): string[] {
  const r = result as { interfaces?: unknown; ips?: unknown };
  const interfaces = Array.isArray(r?.interfaces) ? (r.interfaces as Array<{ name?: unknown; sandbox?: unknown }>) : [];
  const ips = Array.isArray(r?.ips) ? (r.ips as Array<{ address?: unknown; interface?: unknown }>) : [];
  const found: string[] = [];
  for (const ip of ips) {
    if (typeof ip?.address !== 'string') continue;
    // An IP tied to an interface counts only when that is the pod's one (not the bridge on the host).
    if (typeof ip.interface === 'number') {
      const iface = interfaces[ip.interface];
      if (!iface || iface.name !== ifName || !iface.sandbox) continue;
    }
    found.push(ip.address.split('/')[0] as string);
  }
  return [...found.filter((a) => !a.includes(':')), ...found.filter((a) => a.includes(':'))];
}
