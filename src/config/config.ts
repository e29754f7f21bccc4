// berthd's configuration: embedded defaults, overlaid by the TOML file, overlaid by command-line flags.
// Every key is documented in docs/config.md; unknown keys are refused so a typo never silently
// falls back to a default.
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parse } from 'smol-toml';
import type { RegistryConfig, RegistryHostConfig } from '../image/registry/config.ts';
import { DEFAULT_PLAIN_HTTP_HOSTS } from '../image/registry/config.ts';
import { formatPlatform, hostPlatform } from '../image/registry/platform.ts';
import type { ImageServiceConfig } from '../image/service.ts';
import { parseSubnets } from '../network/default-network.ts';
import { errnoCode, errorMessage } from '../util/errors.ts';
import { parsePeer, type Peer } from '../p2p/peers.ts';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
export type CgroupDriverName = 'cgroupfs' | 'systemd';

export interface BerthConfig {
  root: string;
  state: string;
  socket: string;
  logLevel: LogLevel;
  cgroupDriver: CgroupDriverName;
  /** The image service's settings; `platform` defaults to the host's. */
  image: ImageServiceConfig['image'];
  /** Mirrors, plain-HTTP allowlist, CAs and credentials per registry host. */
  registry: RegistryConfig;
  runtime: {
    defaultHandler: string;
    /** Handler name → OCI runtime binary. */
    handlers: Record<string, { path: string }>;
    /** The per-container monitor. */
    conmonPath: string;
    /** Pause process that holds a pod's shared PID namespace (run as `<infra> -P`). */
    infraPath: string;
    /** The per-container exec helper binary (native/exec-helper.c); empty = every exec runs the runtime's `exec`. */
    execHelper: string;
  };
  network: {
    cniConfDir: string;
    cniBinDirs: string[];
    /** Subnet(s) of berth's own bridge network, used when cniConfDir holds no config and no pod CIDR was sent. */
    defaultSubnet: string;
    /** Linux bridge of berth's own network. */
    defaultBridge: string;
    /** Deadline for one CNI plugin run. */
    pluginTimeoutSeconds: number;
    /** Sets of pod namespaces (network, IPC, UTS with /dev/shm) kept made ahead of time for new pods; 0 = make them on demand. */
    netnsPool: number;
  };
  /** The HTTP server behind Exec/Attach/PortForward URLs. */
  streaming: {
    address: string;
    /** 0 = a free port picked at start. */
    port: number;
    /** PEM files; both set = HTTPS. */
    tlsCert?: string;
    tlsKey?: string;
    /** Seconds without traffic before a session is closed; 0 = never. */
    idleTimeout: number;
  };
  /** Serving this node's content to other nodes, and pulling blobs from them first. Off unless `listen` is set. */
  p2p: {
    /** Where the read-only registry API for peers listens (IP and port); undefined = p2p off. */
    listen?: Peer;
    /** Peers known without the node agent (`IP:PORT`); the agent's list (SetPeers) adds to them. */
    peers: string[];
    /** Longest wait for a peer to connect and answer with headers before the next source is tried (ms). */
    peerTimeoutMs: number;
  };
  /** Host operations berthd runs for the node agent (berth.v1.Node): the kubelet switch. */
  node: {
    /** Program and leading arguments that start a transient host unit (`systemd-run`). */
    systemdRun: string[];
    /** Program and leading arguments of berth-install as the host runs it. */
    installCommand: string[];
    /** Deadline of one switch or revert unit, seconds. */
    switchTimeoutSeconds: number;
  };
}

/**
 * The config as `crictl info` (verbose Status) shows it. An allow-list: every key is named here, so
 * a key added later (a token, a password) stays hidden until someone decides to show it.
 * Registry credentials are reported only as present or not.
 */
export function shownConfig(c: BerthConfig): object {
  return {
    root: c.root,
    state: c.state,
    socket: c.socket,
    logLevel: c.logLevel,
    cgroupDriver: c.cgroupDriver,
    image: { platform: c.image.platform, maxConcurrentDownloads: c.image.maxConcurrentDownloads, pullAttempts: c.image.pullAttempts, syncLayers: c.image.syncLayers },
    registry: {
      plainHttpHosts: c.registry.plainHttpHosts,
      hosts: Object.fromEntries(
        Object.entries(c.registry.hosts).map(([domain, h]) => [
          domain,
          {
            mirrors: h.mirrors ?? [],
            skipUpstream: h.skipUpstream ?? false,
            plainHttp: h.plainHttp ?? false,
            skipVerify: h.skipVerify ?? false,
            caFile: h.caFile,
            certFile: h.certFile,
            credentials: Boolean(h.username || h.password || h.auth || h.identityToken || h.registryToken || h.keyFile),
          },
        ]),
      ),
    },
    runtime: {
      defaultHandler: c.runtime.defaultHandler,
      handlers: Object.fromEntries(Object.entries(c.runtime.handlers).map(([name, h]) => [name, { path: h.path }])),
      execHelper: c.runtime.execHelper,
    },
    network: {
      cniConfDir: c.network.cniConfDir,
      cniBinDirs: c.network.cniBinDirs,
      defaultSubnet: c.network.defaultSubnet,
      defaultBridge: c.network.defaultBridge,
      pluginTimeoutSeconds: c.network.pluginTimeoutSeconds,
      netnsPool: c.network.netnsPool,
    },
    // What the node agent's kubelet switch runs on the host (berth.v1.Node): shown so an admin can
    // check from `crictl info` which unit launcher and berth-install a switch or revert would use.
    node: { systemdRun: c.node.systemdRun, installCommand: c.node.installCommand, switchTimeoutSeconds: c.node.switchTimeoutSeconds },
    p2p: { listen: c.p2p.listen ? `${c.p2p.listen.host}:${c.p2p.listen.port}` : '', peers: c.p2p.peers, peerTimeoutMs: c.p2p.peerTimeoutMs },
  };
}

export const DEFAULT_CONFIG_PATH = '/etc/berth/config.toml';

export function defaultConfig(): BerthConfig {
  return {
    root: '/var/lib/berth',
    state: '/run/berth',
    socket: '/run/berth/berth.sock',
    logLevel: 'info',
    cgroupDriver: 'cgroupfs',
    image: { platform: formatPlatform(hostPlatform()), maxConcurrentDownloads: 4, pullAttempts: 4, syncLayers: false },
    registry: { plainHttpHosts: [...DEFAULT_PLAIN_HTTP_HOSTS], hosts: {} },
    runtime: {
      defaultHandler: 'runc',
      handlers: { runc: { path: 'runc' }, crun: { path: 'crun' } },
      conmonPath: 'conmon',
      infraPath: 'catatonit',
      execHelper: fileURLToPath(new URL('../../dist/berth-exec-helper', import.meta.url)),
    },
    network: {
      cniConfDir: '/etc/cni/net.d',
      cniBinDirs: ['/usr/lib/cni', '/opt/cni/bin'],
      defaultSubnet: '10.88.0.0/16',
      defaultBridge: 'berth0',
      pluginTimeoutSeconds: 60,
      netnsPool: 4,
    },
    streaming: { address: '127.0.0.1', port: 0, idleTimeout: 4 * 3600 },
    p2p: { peers: [], peerTimeoutMs: 2000 },
    node: {
      systemdRun: ['systemd-run'],
      installCommand: ['/opt/berth/current/bin/node', '/opt/berth/current/lib/berth-install.js'],
      switchTimeoutSeconds: 600,
    },
  };
}

const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

export class ConfigError extends Error {}

type Table = Record<string, unknown>;

function isTable(v: unknown): v is Table {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Reads typed values out of one TOML table and remembers which keys were consumed. */
class TableReader {
  private readonly seen = new Set<string>();
  private readonly table: Table;
  private readonly where: string;
  constructor(table: Table, where: string) {
    this.table = table;
    this.where = where;
  }
  private key(k: string): string {
    return this.where ? `${this.where}.${k}` : k;
  }
  private take(k: string): unknown {
    this.seen.add(k);
    return this.table[k];
  }
  string(k: string): string | undefined {
    const v = this.take(k);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw new ConfigError(`${this.key(k)} must be a string`);
    return v;
  }
  bool(k: string): boolean | undefined {
    const v = this.take(k);
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') throw new ConfigError(`${this.key(k)} must be true or false`);
    return v;
  }
  int(k: string, min: number, max: number): number | undefined {
    const v = this.take(k);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new ConfigError(`${this.key(k)} must be an integer from ${min} to ${max}`);
    }
    return v;
  }
  strings(k: string): string[] | undefined {
    const v = this.take(k);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) {
      throw new ConfigError(`${this.key(k)} must be an array of strings`);
    }
    return v as string[];
  }
  oneOf<T extends string>(k: string, allowed: readonly T[]): T | undefined {
    const v = this.string(k);
    if (v === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(v)) {
      throw new ConfigError(`${this.key(k)} must be one of ${allowed.join(', ')} (got ${JSON.stringify(v)})`);
    }
    return v as T;
  }
  subtable(k: string): TableReader | undefined {
    const v = this.take(k);
    if (v === undefined) return undefined;
    if (!isTable(v)) throw new ConfigError(`${this.key(k)} must be a table`);
    return new TableReader(v, this.key(k));
  }
  /** Sub-tables whose keys are names chosen by the user (registry domains, handler names). */
  entries(): Array<[string, TableReader]> {
    return Object.keys(this.table).map((name) => [name, this.subtable(name) as TableReader]);
  }
  /** Refuses keys that no reader asked for: they are typos or options from another runtime. */
  done(): void {
    const unknown = Object.keys(this.table).filter((k) => !this.seen.has(k));
    if (unknown.length > 0) throw new ConfigError(`unknown config key ${this.key(unknown[0] as string)}`);
  }
}

function readHost(r: TableReader, base: RegistryHostConfig | undefined): RegistryHostConfig {
  const host: RegistryHostConfig = { ...base };
  const values: RegistryHostConfig = {
    mirrors: r.strings('mirrors'),
    skipUpstream: r.bool('skip_upstream'),
    plainHttp: r.bool('plain_http'),
    skipVerify: r.bool('skip_verify'),
    caFile: r.strings('ca_files') ?? r.string('ca_file'),
    certFile: r.string('cert_file'),
    keyFile: r.string('key_file'),
    username: r.string('username'),
    password: r.string('password'),
    auth: r.string('auth'),
    identityToken: r.string('identity_token'),
    registryToken: r.string('registry_token'),
  };
  r.done();
  for (const [k, v] of Object.entries(values)) if (v !== undefined) Object.assign(host, { [k]: v });
  for (const mirror of host.mirrors ?? []) {
    if (!/^https?:\/\/[^/]+/.test(mirror)) throw new ConfigError(`mirror ${JSON.stringify(mirror)} must be an http:// or https:// URL`);
  }
  if ((host.certFile === undefined) !== (host.keyFile === undefined)) {
    throw new ConfigError('cert_file and key_file go together');
  }
  return host;
}

/** Applies a parsed TOML document on top of `base` and returns the result. */
export function applyToml(base: BerthConfig, doc: Table): BerthConfig {
  const cfg = structuredClone(base);
  const top = new TableReader(doc, '');
  cfg.root = top.string('root') ?? cfg.root;
  cfg.state = top.string('state') ?? cfg.state;
  cfg.socket = top.string('socket') ?? cfg.socket;
  cfg.logLevel = top.oneOf('log_level', LOG_LEVELS) ?? cfg.logLevel;
  cfg.cgroupDriver = top.oneOf('cgroup_driver', ['cgroupfs', 'systemd'] as const) ?? cfg.cgroupDriver;

  const image = top.subtable('image');
  if (image) {
    cfg.image.platform = image.string('platform') ?? cfg.image.platform;
    if (!/^[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9]+)?$/.test(cfg.image.platform)) {
      throw new ConfigError(`image.platform must look like os/arch[/variant] (got ${JSON.stringify(cfg.image.platform)})`);
    }
    cfg.image.maxConcurrentDownloads = image.int('max_concurrent_downloads', 1, 64) ?? cfg.image.maxConcurrentDownloads;
    cfg.image.pullAttempts = image.int('pull_attempts', 1, 20) ?? cfg.image.pullAttempts;
    cfg.image.syncLayers = image.bool('sync_layers') ?? cfg.image.syncLayers;
    image.done();
  }

  const registry = top.subtable('registry');
  if (registry) {
    cfg.registry.plainHttpHosts = registry.strings('plain_http') ?? cfg.registry.plainHttpHosts;
    const hosts = registry.subtable('hosts');
    for (const [domain, r] of hosts?.entries() ?? []) cfg.registry.hosts[domain] = readHost(r, cfg.registry.hosts[domain]);
    hosts?.done();
    registry.done();
  }

  const runtime = top.subtable('runtime');
  if (runtime) {
    cfg.runtime.defaultHandler = runtime.string('default_handler') ?? cfg.runtime.defaultHandler;
    cfg.runtime.conmonPath = runtime.string('conmon_path') ?? cfg.runtime.conmonPath;
    cfg.runtime.infraPath = runtime.string('infra_path') ?? cfg.runtime.infraPath;
    cfg.runtime.execHelper = runtime.string('exec_helper') ?? cfg.runtime.execHelper;
    const handlers = runtime.subtable('handlers');
    for (const [name, r] of handlers?.entries() ?? []) {
      const path = r.string('path');
      if (!path) throw new ConfigError(`runtime.handlers.${name}.path is required`);
      cfg.runtime.handlers[name] = { path };
      r.done();
    }
    handlers?.done();
    runtime.done();
    if (!cfg.runtime.handlers[cfg.runtime.defaultHandler]) {
      throw new ConfigError(`runtime.default_handler ${JSON.stringify(cfg.runtime.defaultHandler)} is not in runtime.handlers`);
    }
  }

  const network = top.subtable('network');
  if (network) {
    cfg.network.cniConfDir = network.string('cni_conf_dir') ?? cfg.network.cniConfDir;
    cfg.network.cniBinDirs = network.strings('cni_bin_dirs') ?? cfg.network.cniBinDirs;
    cfg.network.defaultSubnet = network.string('default_subnet') ?? cfg.network.defaultSubnet;
    try {
      parseSubnets(cfg.network.defaultSubnet);
    } catch (err) {
      throw new ConfigError(`network.default_subnet: ${(err as Error).message}`);
    }
    cfg.network.defaultBridge = network.string('default_bridge') ?? cfg.network.defaultBridge;
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(cfg.network.defaultBridge)) {
      throw new ConfigError(`network.default_bridge must be a Linux interface name (1-15 letters, digits, _ . -)`);
    }
    cfg.network.pluginTimeoutSeconds = network.int('plugin_timeout', 1, 600) ?? cfg.network.pluginTimeoutSeconds;
    cfg.network.netnsPool = network.int('netns_pool', 0, 64) ?? cfg.network.netnsPool;
    network.done();
  }

  const streaming = top.subtable('streaming');
  if (streaming) {
    cfg.streaming.address = streaming.string('address') ?? cfg.streaming.address;
    if (isIP(cfg.streaming.address) === 0) throw new ConfigError(`streaming.address must be an IP address (got ${JSON.stringify(cfg.streaming.address)})`);
    cfg.streaming.port = streaming.int('port', 0, 65535) ?? cfg.streaming.port;
    cfg.streaming.tlsCert = streaming.string('tls_cert') ?? cfg.streaming.tlsCert;
    cfg.streaming.tlsKey = streaming.string('tls_key') ?? cfg.streaming.tlsKey;
    cfg.streaming.idleTimeout = streaming.int('idle_timeout', 0, 7 * 24 * 3600) ?? cfg.streaming.idleTimeout;
    streaming.done();
    if ((cfg.streaming.tlsCert === undefined) !== (cfg.streaming.tlsKey === undefined)) {
      throw new ConfigError('streaming.tls_cert and streaming.tls_key go together');
    }
  }

  const p2p = top.subtable('p2p');
  if (p2p) {
    const listen = p2p.string('listen');
    if (listen !== undefined) cfg.p2p.listen = listen === '' ? undefined : configPeer('p2p.listen', listen);
    cfg.p2p.peers = p2p.strings('peers') ?? cfg.p2p.peers;
    for (const peer of cfg.p2p.peers) configPeer('p2p.peers', peer);
    cfg.p2p.peerTimeoutMs = p2p.int('peer_timeout_ms', 50, 60_000) ?? cfg.p2p.peerTimeoutMs;
    p2p.done();
  }

  const node = top.subtable('node');
  if (node) {
    cfg.node.systemdRun = node.strings('systemd_run') ?? cfg.node.systemdRun;
    cfg.node.installCommand = node.strings('install_command') ?? cfg.node.installCommand;
    cfg.node.switchTimeoutSeconds = node.int('switch_timeout', 1, 24 * 3600) ?? cfg.node.switchTimeoutSeconds;
    node.done();
    for (const [key, argv] of [['systemd_run', cfg.node.systemdRun], ['install_command', cfg.node.installCommand]] as const) {
      if (argv.length === 0 || argv[0] === '') throw new ConfigError(`node.${key} must name a program (a non-empty array of strings)`);
    }
  }
  top.done();
  return cfg;
}

function configPeer(key: string, text: string): Peer {
  try {
    return parsePeer(text);
  } catch (err) {
    throw new ConfigError(`${key}: ${errorMessage(err)}`);
  }
}

export function parseConfigText(text: string, base = defaultConfig()): BerthConfig {
  let doc: Table;
  try {
    doc = parse(text) as Table;
  } catch (err) {
    throw new ConfigError(`not valid TOML: ${err instanceof Error ? err.message : String(err)}`);
  }
  return applyToml(base, doc);
}

/**
 * Loads the config file. An explicitly named file must exist; the default path is optional so that
 * berthd runs on its embedded defaults on a fresh machine.
 */
export async function loadConfig(path: string | undefined): Promise<{ config: BerthConfig; source: string | null }> {
  const file = path ?? DEFAULT_CONFIG_PATH;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (path === undefined && errnoCode(err) === 'ENOENT') return { config: defaultConfig(), source: null };
    throw new ConfigError(`cannot read config ${file}: ${(err as Error).message}`);
  }
  try {
    return { config: parseConfigText(text), source: file };
  } catch (err) {
    throw new ConfigError(`${file}: ${(err as Error).message}`);
  }
}
