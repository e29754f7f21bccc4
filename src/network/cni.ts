// PodNetwork: attaches pods to the node's CNI network and detaches them. It picks the network (the
// first valid file in cni_conf_dir, else berth's own default bridge), runs the plugin chain for
// ADD / DEL / CHECK with the pod's CNI_ARGS and capabilities, and keeps what it did in a
// crash-safe cache so teardown works after a restart or a config change.
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { BerthConfig } from '../config/config.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { BerthError, errorMessage, failedPrecondition, invalidArgument } from '../util/errors.ts';
import { scanConfDir, type NetworkList, type PluginConf } from './cni-config.ts';
import { execPlugin, findPlugin, resultIps } from './cni-exec.ts';
import { parseSubnets, renderDefaultNetwork } from './default-network.ts';
import { readInterfaceStats, type InterfaceStats } from './interface-stats.ts';
import { ensureMasquerade, removeMasquerade } from './masquerade.ts';
import { netnsExists } from './netns.ts';
import { checkSandboxId, ResultCache, type AttachmentRecord } from './result-cache.ts';
import { StepClock } from '../util/step-clock.ts';

export type { InterfaceStats } from './interface-stats.ts';

export interface PortMapping {
  protocol: 'TCP' | 'UDP' | 'SCTP';
  containerPort: number;
  hostPort: number;
  hostIp: string;
}

export interface PodNetworkRequest {
  sandboxId: string;
  name: string;
  namespace: string;
  uid: string;
  netnsPath: string;
  portMappings: PortMapping[];
  dns?: { servers: string[]; searches: string[]; options: string[] };
  cgroupParent?: string;
}

export interface NetworkReadiness {
  ready: boolean;
  reason: string;
  message: string;
}

/** The pod's interface name, as every CRI runtime uses. */
const IF_NAME = 'eth0';

interface Selected {
  network: NetworkList;
  source: string;
  /** Subnets berth masquerades itself (its default network), installed with the first pod. */
  masquerade?: string[];
}

export class PodNetwork {
  readonly #config: BerthConfig;
  readonly #log: Logger;
  readonly #dir: string;
  readonly #cache: ResultCache;
  #podCidr: string | undefined;
  #selected: Selected | undefined;
  #readiness: NetworkReadiness = { ready: false, reason: 'NetworkPluginNotReady', message: 'network not initialised yet' };
  /** Conf dir mtime at the last scan: a scan is skipped while nothing in the dir changed. */
  #scannedMtime = -1;
  /** Masquerade rules known to be in place (checked once per subnet per daemon run). */
  readonly #masqueraded = new Set<string>();
  /** One operation per sandbox at a time: a DEL racing its own ADD would free an IP still being set up. */
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #inFlight = new Set<Promise<unknown>>();
  #closed = false;

  constructor(opts: { config: BerthConfig; log: Logger }) {
    this.#config = opts.config;
    this.#log = opts.log;
    this.#dir = join(opts.config.root, 'network');
    this.#cache = new ResultCache(join(this.#dir, 'results'));
  }

  async init(): Promise<void> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    this.#podCidr = await this.#loadPodCidr();
    await this.refresh();
    this.#log.info({ network: this.#selected?.network.name, source: this.#selected?.source, ready: this.#readiness.ready, message: this.#readiness.message || undefined }, 'pod network');
  }

  /** NetworkReady for Status, as of the last refresh(). */
  ready(): NetworkReadiness {
    return this.#readiness;
  }

  /** Re-reads cni_conf_dir when it changed (cheap otherwise) and re-checks the plugins. */
  async refresh(): Promise<void> {
    const confDir = this.#config.network.cniConfDir;
    const mtime = await stat(confDir).then((s) => s.mtimeMs, () => 0);
    if (mtime !== this.#scannedMtime || !this.#readiness.ready) {
      this.#scannedMtime = mtime;
      const scan = await scanConfDir(confDir);
      if (scan.kind === 'found') {
        for (const why of scan.skipped) this.#log.warn(`CNI config skipped: ${why}`);
        this.#selected = { network: scan.loaded.network, source: scan.loaded.source };
      } else if (scan.kind === 'empty') {
        this.#selected = await this.#defaultNetwork();
      } else {
        this.#selected = undefined;
        this.#readiness = {
          ready: false,
          reason: 'NetworkPluginNotReady',
          message: `no valid CNI network config in ${confDir}: ${scan.skipped.join('; ')}`,
        };
        return;
      }
    }
    const selected = this.#selected as Selected;
    try {
      for (const plugin of selected.network.plugins) await findPlugin(plugin.type, this.#config.network.cniBinDirs);
      this.#readiness = { ready: true, reason: '', message: '' };
    } catch (err) {
      this.#readiness = { ready: false, reason: 'NetworkPluginNotReady', message: `network ${selected.network.name} (${selected.source}): ${errorMessage(err)}` };
    }
  }

  /** Which network new pods join, for `crictl info`. */
  current(): { name: string; source: string } | undefined {
    return this.#selected && { name: this.#selected.network.name, source: this.#selected.source };
  }

  /**
   * Runs CNI ADD for the pod. Returns its IPs, primary (IPv4) first. On failure the chain's DEL
   * undoes whatever the plugins made and the error names the plugin that failed. `netnsReady` is
   * the caller still making the netns: the record is written meanwhile, the plugins wait for it.
   * The IPs come back as soon as the chain succeeded: the ADD result is saved after that (the
   * caller's own record write overlaps it), and DEL and CHECK of the pod queue behind the save.
   */
  async setUp(req: PodNetworkRequest, signal?: AbortSignal, netnsReady: Promise<unknown> = Promise.resolve()): Promise<{ ips: string[] }> {
    checkRequest(req);
    let answer = (_: { ips: string[] }): void => undefined;
    const added = new Promise<{ ips: string[] }>((resolve) => (answer = resolve));
    const job = this.#serial(req.sandboxId, async () => {
      const clock = new StepClock();
      await clock.time('refresh', this.refresh());
      if (!this.#readiness.ready || !this.#selected) throw failedPrecondition(`pod network not ready: ${this.#readiness.message}`);
      for (const subnet of this.#selected.masquerade ?? []) {
        if (this.#masqueraded.has(subnet)) continue;
        await ensureMasquerade(subnet, signal);
        this.#masqueraded.add(subnet);
      }
      const earlier = await this.#record(req.sandboxId);
      // A retried setUp returns what the first made; one cut off mid-ADD is undone first.
      if (earlier?.result !== undefined) return { ips: resultIps(earlier.result, earlier.ifName) };
      if (earlier) await this.#del(earlier, earlier.netnsPath, signal);
      const record: AttachmentRecord = {
        sandboxId: req.sandboxId,
        netnsPath: req.netnsPath,
        ifName: IF_NAME,
        network: this.#selected.network,
        args: cniArgs(req),
        capabilityArgs: capabilityArgs(req),
      };
      // Recorded before any plugin acts: a crash from here on still leaves enough for DEL.
      const ready = Promise.allSettled([clock.time('cache', this.#cache.put(record)), netnsReady]).then(async ([put, netns]) => {
        if (netns.status === 'rejected') {
          if (put.status === 'fulfilled') await this.#cache.remove(req.sandboxId);
          throw netns.reason;
        }
        if (put.status === 'rejected') throw put.reason;
      });
      ready.catch(() => undefined); // handled below, possibly after it settles
      let prevResult: unknown;
      for (const [index, plugin] of record.network.plugins.entries()) {
        // The first plugin starts now and reads its config once the record and the netns are
        // there: its process start-up (a Go binary: 3-5 ms here) overlaps the record's fsync.
        const inputAfter = index === 0 ? ready : undefined;
        try {
          prevResult = await clock.time(`ADD ${plugin.type}`, execPlugin({ ...this.#call(record, 'ADD', signal), plugin, netns: req.netnsPath, prevResult, ...(inputAfter ? { inputAfter } : {}) }));
        } catch (err) {
          // Nothing ran when the record or the netns failed (ready cleaned up after itself).
          if (inputAfter && (await inputAfter.then(() => false, () => true))) throw err;
          await this.#rollback(record, index, prevResult);
          throw err;
        }
      }
      record.result = prevResult;
      const ips = resultIps(prevResult, IF_NAME);
      answer({ ips });
      // Not fsynced, and not worth failing the pod for: without it DEL runs without prevResult,
      // which the CNI spec allows (see result-cache.ts).
      await clock.time('cache-result', this.#cache.putResult(record.sandboxId, prevResult)).catch((err: unknown) =>
        this.#log.warn({ sandbox: req.sandboxId, err: errorMessage(err) }, 'could not save the CNI ADD result; DEL will run without it'),
      );
      this.#log.debug({ sandbox: req.sandboxId, ips, ms: clock.marks }, 'pod network set up');
      return { ips };
    });
    return Promise.race([added, job]);
  }

  /**
   * Runs CNI DEL from the cached record (so it works after a restart or a config change) and then
   * forgets the pod. A pod with no record was never set up or is already torn down: nothing to do.
   */
  async tearDown(req: Pick<PodNetworkRequest, 'sandboxId' | 'netnsPath'>, signal?: AbortSignal): Promise<void> {
    checkSandboxId(req.sandboxId);
    await this.#serial(req.sandboxId, async () => {
      const clock = new StepClock();
      const record = await this.#record(req.sandboxId);
      if (!record) return;
      await this.#del(record, req.netnsPath || record.netnsPath, signal, clock);
      await clock.time('cache', this.#cache.remove(req.sandboxId));
      this.#log.debug({ sandbox: req.sandboxId, ms: clock.marks }, 'pod network torn down');
    });
  }

  /** Sandboxes the network has an attachment record for (set up, or torn down without success). */
  attachments(): Promise<string[]> {
    return this.#cache.ids();
  }

  /** Runs CNI CHECK for the pod against its cached ADD result; throws naming the failing plugin. */
  async check(req: Pick<PodNetworkRequest, 'sandboxId' | 'netnsPath'>, signal?: AbortSignal): Promise<void> {
    checkSandboxId(req.sandboxId);
    await this.#serial(req.sandboxId, async () => {
      const record = await this.#record(req.sandboxId);
      if (!record?.result) throw failedPrecondition(`pod ${req.sandboxId} has no network attachment to check`);
      // CHECK exists from spec 0.4.0 on; a list may also opt out.
      if (record.network.cniVersion.startsWith('0.3.') || record.network.disableCheck) return;
      for (const plugin of record.network.plugins) {
        await execPlugin({ ...this.#call(record, 'CHECK', signal), plugin, netns: req.netnsPath || record.netnsPath, prevResult: record.result });
      }
    });
  }

  /**
   * The kubelet's pod CIDR (UpdateRuntimeConfig). It becomes the subnet of berth's own default
   * network, kept across restarts; a CNI config of the admin's own is left alone, as containerd does.
   */
  async updatePodCidr(cidr: string): Promise<void> {
    try {
      parseSubnets(cidr);
    } catch (err) {
      throw invalidArgument(`pod CIDR ${errorMessage(err)}`);
    }
    if (cidr === this.#podCidr) return;
    const old = parseSubnets(this.#podCidr ?? this.#config.network.defaultSubnet);
    await writeFileAtomic(join(this.#dir, 'pod-cidr.json'), JSON.stringify({ podCidr: cidr }), 0o600);
    this.#podCidr = cidr;
    // Pods on the old subnet lose their gateway anyway (see default-network.ts).
    for (const subnet of old) {
      await removeMasquerade(subnet);
      this.#masqueraded.delete(subnet);
    }
    this.#log.info({ podCidr: cidr }, 'pod CIDR updated');
    this.#scannedMtime = -1;
    await this.refresh();
  }

  async interfaceStats(netnsPath: string, signal?: AbortSignal): Promise<InterfaceStats[]> {
    return readInterfaceStats(netnsPath, signal);
  }

  /** Waits for operations in flight (each has a deadline) and refuses new ones. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#inFlight]);
  }

  #record(sandboxId: string): Promise<AttachmentRecord | undefined> {
    return this.#cache.get(sandboxId, (path) =>
      this.#log.error({ sandbox: sandboxId, path }, 'damaged CNI result record moved aside; this pod\'s IP lease and host rules may need manual cleanup'),
    );
  }

  async #defaultNetwork(): Promise<Selected> {
    const subnets = parseSubnets(this.#podCidr ?? this.#config.network.defaultSubnet);
    const network = renderDefaultNetwork({
      subnets,
      bridge: this.#config.network.defaultBridge,
      ipamDataDir: join(this.#dir, 'ipam'),
    });
    // Written out so an admin can see (and copy into cni_conf_dir) exactly what pods join.
    const source = join(this.#dir, 'default.conflist');
    const text = `${JSON.stringify(network, null, 2)}\n`;
    if ((await readFile(source, 'utf8').catch(() => '')) !== text) await writeFileAtomic(source, text);
    return { network, source, masquerade: subnets };
  }

  async #loadPodCidr(): Promise<string | undefined> {
    const path = join(this.#dir, 'pod-cidr.json');
    try {
      const cidr = (JSON.parse(await readFile(path, 'utf8')) as { podCidr?: unknown }).podCidr;
      if (typeof cidr === 'string') {
        parseSubnets(cidr);
        return cidr;
      }
      throw new Error('no podCidr');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      this.#log.warn({ path, err: errorMessage(err) }, 'ignoring damaged pod CIDR record; the kubelet sends it again');
      return undefined;
    }
  }

  #call(record: AttachmentRecord, command: 'ADD' | 'DEL' | 'CHECK', signal: AbortSignal | undefined) {
    return {
      command,
      network: record.network,
      binDirs: this.#config.network.cniBinDirs,
      containerId: record.sandboxId,
      ifName: record.ifName,
      args: record.args,
      capabilityArgs: record.capabilityArgs,
      timeoutMs: this.#config.network.pluginTimeoutSeconds * 1000,
      signal,
    };
  }

  /**
   * DEL over `plugins` (the whole chain unless given), last plugin first; every plugin runs even if
   * one fails. Returns the index of each plugin whose DEL failed with its error.
   */
  async #delEach(record: AttachmentRecord, netnsPath: string, signal: AbortSignal | undefined, prevResult: unknown, count = record.network.plugins.length, clock?: StepClock): Promise<Array<[number, unknown]>> {
    // A netns already removed is passed as '' so plugins still release IPs and host rules they can
    // find without entering it. (bridge's ipMasq rules are found through the pod's interface, so
    // callers tear the network down before removing the netns, as containerd does.)
    const netns = netnsPath && (await netnsExists(netnsPath)) ? netnsPath : '';
    const failures: Array<[number, unknown]> = [];
    for (let i = count - 1; i >= 0; i--) {
      const plugin = record.network.plugins[i] as PluginConf;
      try {
        await execPlugin({ ...this.#call(record, 'DEL', signal), plugin, netns, prevResult });
      } catch (err) {
        failures.push([i, err]);
      }
      clock?.mark(`DEL ${plugin.type}`);
    }
    return failures;
  }

  async #del(record: AttachmentRecord, netnsPath: string, signal?: AbortSignal, clock?: StepClock): Promise<void> {
    const failures = await this.#delEach(record, netnsPath, signal, record.result, record.network.plugins.length, clock);
    if (failures.length > 0) throw failures[0]?.[1];
  }

  /**
   * Undoes an ADD that failed at plugin `failed`: DEL for it and every plugin before it. The failed
   * plugin's own DEL may fail too (a config it cannot parse fails both ways) and is not held against
   * the rollback: a plugin cleans up its own half-done ADD. A failed DEL of an earlier plugin keeps
   * the record, so StopPodSandbox retries the teardown.
   */
  async #rollback(record: AttachmentRecord, failed: number, prevResult: unknown): Promise<void> {
    // No signal: the caller may have given up, but what the plugins made must still go.
    const failures = (await this.#delEach(record, record.netnsPath, undefined, prevResult, failed + 1)).filter(([i]) => i < failed);
    if (failures.length === 0) {
      await this.#cache.remove(record.sandboxId);
      return;
    }
    for (const [, err] of failures) {
      this.#log.error({ sandbox: record.sandboxId, err: errorMessage(err) }, 'rolling back a failed CNI ADD failed; StopPodSandbox retries the DEL');
    }
  }

  async #serial<T>(key: string, job: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new BerthError('unavailable', 'pod network is shutting down');
    const before = this.#locks.get(key) ?? Promise.resolve();
    const run = before.catch(() => {}).then(job);
    const tail = run.catch(() => {});
    this.#locks.set(key, tail);
    this.#inFlight.add(tail);
    try {
      return await run;
    } finally {
      this.#inFlight.delete(tail);
      if (this.#locks.get(key) === tail) this.#locks.delete(key);
    }
  }
}

function checkRequest(req: PodNetworkRequest): void {
  checkSandboxId(req.sandboxId);
  if (!req.netnsPath.startsWith('/')) throw invalidArgument(`netns path ${JSON.stringify(req.netnsPath)} must be absolute`);
  for (const [key, v] of [['name', req.name], ['namespace', req.namespace], ['uid', req.uid]] as const) {
    // CNI_ARGS is `K=V;K=V`: these characters would forge other keys.
    if (/[;=]/.test(v)) throw invalidArgument(`pod ${key} ${JSON.stringify(v)} must not contain ";" or "="`);
  }
  for (const pm of req.portMappings) {
    if (!Number.isInteger(pm.containerPort) || pm.containerPort < 1 || pm.containerPort > 65535) {
      throw invalidArgument(`port mapping container_port ${pm.containerPort} must be 1-65535`);
    }
    if (!Number.isInteger(pm.hostPort) || pm.hostPort < 0 || pm.hostPort > 65535) {
      throw invalidArgument(`port mapping host_port ${pm.hostPort} must be 0-65535`);
    }
  }
}

function cniArgs(req: PodNetworkRequest): string {
  return [
    'IgnoreUnknown=1',
    `K8S_POD_NAMESPACE=${req.namespace}`,
    `K8S_POD_NAME=${req.name}`,
    `K8S_POD_INFRA_CONTAINER_ID=${req.sandboxId}`,
    `K8S_POD_UID=${req.uid}`,
  ].join(';');
}

function capabilityArgs(req: PodNetworkRequest): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  // A mapping without a host port only documents the container port: nothing to set up on the host.
  const mappings = req.portMappings
    .filter((pm) => pm.hostPort > 0)
    .map((pm) => ({ hostPort: pm.hostPort, containerPort: pm.containerPort, protocol: pm.protocol.toLowerCase(), hostIP: pm.hostIp }));
  if (mappings.length > 0) args.portMappings = mappings;
  if (req.dns && (req.dns.servers.length > 0 || req.dns.searches.length > 0 || req.dns.options.length > 0)) args.dns = req.dns;
  if (req.cgroupParent) args.cgroupPath = req.cgroupParent;
  return args;
}
