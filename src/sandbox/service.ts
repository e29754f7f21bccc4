// Pod sandboxes: their records, their namespaces and network, and their life (run → stop → remove).
// A sandbox has no infra container: its namespaces are pinned (see namespaces.ts), so a pod costs
// no process unless it shares a PID namespace.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { BerthConfig } from '../config/config.ts';
import type { PodSandboxConfig__Output } from '../cri/gen/runtime/v1/PodSandboxConfig.ts';
import { RecordDir } from '../store/record-dir.ts';
import { alreadyExists, errorMessage, failedPrecondition, invalidArgument, notFound, throwMostTelling } from '../util/errors.ts';
import { KeyedMutex } from '../util/keyed-mutex.ts';
import { StepClock } from '../util/step-clock.ts';
import { mountsUnder, unmount } from '../util/mount.ts';
import { checkDns, writePodFiles } from './files.ts';
import { isAlive, pinPaths, pinPodNamespaces, startPidHolder, stopPidHolder } from './namespaces.ts';
import { isSandboxRecord, type Owner, type SandboxRecord } from './record.ts';
import type { PodNetwork, PodNetworkRequest } from '../network/cni.ts';
import { createNetns, removeNetns } from '../network/netns.ts';
import { NamespacePool } from './namespace-pool.ts';

/** What the sandbox service needs from the container service (which is built after it). */
export interface PodContainers {
  /** Stops every container of the sandbox (grace period 0 = kill at once). */
  stopAllIn(sandboxId: string, graceSeconds: number, signal: AbortSignal): Promise<void>;
  removeAllIn(sandboxId: string, signal: AbortSignal): Promise<void>;
}

export interface RunSandboxOptions {
  config: PodSandboxConfig__Output;
  runtimeHandler: string;
  owner: Owner;
}

/** Sysctls that live in a namespace the pod may share with the host, and which one. */
function sysctlNamespace(name: string): 'net' | 'ipc' | 'uts' | undefined {
  if (name.startsWith('net.')) return 'net';
  if (/^kernel\.(shm|msg|sem)/.test(name) || name.startsWith('fs.mqueue.')) return 'ipc';
  if (name === 'kernel.hostname' || name === 'kernel.domainname') return 'uts';
  return undefined;
}

export class SandboxService {
  readonly records: RecordDir<SandboxRecord>;
  private readonly config: BerthConfig;
  private readonly log: Logger;
  private readonly net: PodNetwork;
  private readonly locks = new KeyedMutex();
  /** Pods' namespaces (network, IPC, UTS with /dev/shm) made ahead of time, pinned where pods' own go. */
  private readonly pool: NamespacePool;
  private containers: PodContainers | undefined;

  constructor(config: BerthConfig, log: Logger, net: PodNetwork) {
    this.config = config;
    this.log = log;
    this.net = net;
    this.records = new RecordDir(join(config.root, 'metadata', 'sandboxes'), isSandboxRecord);
    this.pool = new NamespacePool({
      size: config.network.netnsPool,
      log,
      make: (id, signal) => this.makePooled(id, signal),
      remove: (id) => this.removePooled(id),
    });
  }

  /** Connects the container service, which needs this one to exist first. */
  attach(containers: PodContainers): void {
    this.containers = containers;
  }

  /** Loads records and checks each ready sandbox still has what it needs (after a reboot it does not). */
  async init(): Promise<void> {
    for (const path of await this.records.load()) this.log.warn({ path }, 'unreadable sandbox record moved aside; that pod is forgotten');
    await this.sweepOrphans();
    for (const sb of this.records.all()) {
      if (sb.state !== 'ready') continue;
      const holderGone = sb.pidHolder !== undefined && !(await isAlive(sb.pidHolder));
      const pinned = new Set(await mountsUnder(sb.dir));
      const lost = [sb.ipcPath, sb.utsPath].some((p) => p !== undefined && !pinned.has(p));
      if (holderGone || lost) {
        this.log.warn({ sandbox: sb.id, holderGone, lost }, 'sandbox lost its namespaces while berthd was down; marking it not ready');
        await this.records.put({ ...sb, state: 'notready' });
      }
    }
    // After the sweep, which removes the pins of a pool a killed daemon left (they have no record).
    this.pool.start();
  }

  /** Removes the pooled namespaces; pods keep theirs. */
  async close(): Promise<void> {
    await this.pool.close();
  }

  /** A pod's network namespace, IPC and UTS pins and /dev/shm, where the pod with sandbox ID `id` keeps them. */
  private async makePooled(id: string, signal: AbortSignal): Promise<void> {
    await createNetns(join(this.config.state, 'netns', id), signal);
    try {
      const dir = join(this.config.state, 'sandboxes', id);
      await mkdir(dir, { recursive: true, mode: 0o711 });
      await pinPodNamespaces(dir, pinPaths(dir, { ipc: true, uts: true }), signal);
    } catch (err) {
      await this.removePooled(id).catch(() => undefined);
      throw err;
    }
  }

  private async removePooled(id: string): Promise<void> {
    const dir = join(this.config.state, 'sandboxes', id);
    await unmount([...Object.values(pinPaths(dir, { ipc: true, uts: true })), join(dir, 'shm')]);
    await rm(dir, { recursive: true, force: true });
    await removeNetns(join(this.config.state, 'netns', id));
  }

  /** Releases pod directories and netns pins that no record owns (a record moved aside as corrupt, a namespace pool a killed daemon left). */
  private async sweepOrphans(): Promise<void> {
    const known = (name: string): boolean => !/^[a-f0-9]{64}$/.test(name) || this.records.get(name) !== undefined;
    for (const name of await readdir(join(this.config.state, 'sandboxes')).catch(() => [] as string[])) {
      if (known(name)) continue;
      const dir = join(this.config.state, 'sandboxes', name);
      for (const m of await mountsUnder(dir)) await unmount(m);
      await rm(dir, { recursive: true, force: true });
      this.log.warn({ sandbox: name }, 'released the namespaces of a pod berth has no record of');
    }
    for (const name of await readdir(join(this.config.state, 'netns')).catch(() => [] as string[])) {
      if (known(name)) continue;
      await this.net.tearDown({ sandboxId: name, netnsPath: join(this.config.state, 'netns', name) }).catch(() => undefined);
      await removeNetns(join(this.config.state, 'netns', name));
    }
    // A network attachment whose netns is gone too (a failed RunPodSandbox whose DEL failed, or a
    // reboot): DEL without a netns still frees the IP and the host rules plugins find by ID.
    for (const id of await this.net.attachments()) {
      if (known(id)) continue;
      await this.net.tearDown({ sandboxId: id, netnsPath: '' }).catch((err: unknown) => this.log.warn({ sandbox: id, err: errorMessage(err) }, 'CNI DEL of a pod berth has no record of failed; retried at the next start'));
    }
  }

  get(idOrPrefix: string): SandboxRecord {
    const sb = this.records.find(idOrPrefix, 'sandbox');
    if (!sb) throw notFound(`pod sandbox ${JSON.stringify(idOrPrefix)} not found`);
    return sb;
  }

  find(idOrPrefix: string): SandboxRecord | undefined {
    return this.records.find(idOrPrefix, 'sandbox');
  }

  async run(opts: RunSandboxOptions, signal: AbortSignal): Promise<SandboxRecord> {
    const { config } = opts;
    const md = config.metadata;
    if (!md || !md.name || !md.namespace || !md.uid) {
      throw invalidArgument('pod sandbox metadata with name, namespace and uid is required');
    }
    const handler = opts.runtimeHandler || this.config.runtime.defaultHandler;
    if (!this.config.runtime.handlers[handler]) {
      throw invalidArgument(`runtime handler ${JSON.stringify(handler)} is not configured; configured handlers: ${Object.keys(this.config.runtime.handlers).join(', ')}`);
    }
    const nsOpts = config.linux?.security_context?.namespace_options;
    const hostNetwork = nsOpts?.network === 'NODE';
    const hostIpc = nsOpts?.ipc === 'NODE';
    const hostPid = nsOpts?.pid === 'NODE';
    if (nsOpts?.pid === 'TARGET') throw invalidArgument('namespace_options.pid TARGET is for containers, not pod sandboxes');
    for (const name of Object.keys(config.linux?.sysctls ?? {})) {
      const ns = sysctlNamespace(name);
      if (!ns) throw invalidArgument(`sysctl ${name} is not namespaced; a pod may only set namespaced sysctls`);
      if ((ns === 'net' && hostNetwork) || (ns === 'ipc' && hostIpc) || (ns === 'uts' && hostNetwork)) {
        throw invalidArgument(`sysctl ${name} would change the host: the pod shares the host's ${ns} namespace`);
      }
    }
    checkDns(config.dns_config);
    const key = `${md.name}_${md.namespace}_${md.uid}_${md.attempt}`;
    const holder = this.records.all().find((s) => s.key === key);
    if (holder) throw alreadyExists(`pod sandbox name ${key} is already used by sandbox ${holder.id}; remove it first`);

    // A pod with network and IPC namespaces of its own (nearly all) takes a pooled set, and with it
    // the sandbox ID it was pinned under; the pool waits to refill until no pod start is in flight.
    const started = this.pool.starting();
    const pooled = hostNetwork || hostIpc ? undefined : this.pool.take();
    const id = pooled ?? randomBytes(32).toString('hex');
    return this.locks.run(id, async () => {
      const dir = join(this.config.state, 'sandboxes', id);
      const rec: SandboxRecord = {
        id,
        owner: opts.owner,
        key,
        config,
        runtimeHandler: handler,
        createdAt: Date.now() * 1e6,
        state: 'notready',
        hostNetwork,
        hostIpc,
        hostPid,
        ips: [],
        dir,
        cgroupParent: config.linux?.cgroup_parent ?? '',
      };
      const clock = new StepClock();
      // Claim the name before the first await so a concurrent run with the same name fails. The
      // write (fsynced) goes on while the pod directory, namespaces and network are made: what they
      // leave if berthd dies first is found by the startup sweep (pod and netns directories, CNI
      // records without a sandbox record); only the PID holder, a process nobody could find, waits
      // for the record. (Holding this fsync back until the CNI record's is done was tried: the
      // CNI record took as long either way.)
      const claimed = clock.time('record', this.records.put(rec));
      claimed.catch(() => undefined);
      try {
        // The network (the long pole: netns, then CNI ADD), the pod's directory with its files,
        // namespaces and /dev/shm, and the PID holder do not depend on each other: set them up
        // side by side, the network first so its process chain starts first. Each records what it
        // made in `rec` as soon as it exists, so a rollback releases exactly that.
        const steps = await Promise.allSettled([
          (async () => {
            if (hostNetwork) return;
            // One shared directory for every pod's netns pin (see network/netns.ts), not the pod's own.
            rec.netnsPath = join(this.config.state, 'netns', id);
            // The CNI record is written while the netns is made; the plugins wait for both.
            const netns = pooled ? Promise.resolve() : clock.time('netns', createNetns(rec.netnsPath, signal));
            const [made, added] = await Promise.allSettled([netns, clock.time('cni-add', this.net.setUp(this.networkRequest(rec), signal, netns))]);
            throwMostTelling([made, added]);
            if (added.status === 'fulfilled') rec.ips = added.value.ips;
          })(),
          (async () => {
            if (!pooled) await mkdir(dir, { recursive: true, mode: 0o711 });
            if (config.log_directory) await mkdir(config.log_directory, { recursive: true, mode: 0o755 });
            await clock.time('files', writePodFiles(dir, { hostname: config.hostname || md.name, hostNetwork, dns: config.dns_config }));
            // Recorded before they exist, so a rollback after a half-done unshare still unpins them.
            Object.assign(rec, pinPaths(dir, { ipc: !hostIpc, uts: !hostNetwork }));
            if (!pooled) await clock.time('pins+shm', pinPodNamespaces(dir, rec, signal));
          })(),
          (async () => {
            if ((nsOpts?.pid ?? 'POD') !== 'POD') return;
            await claimed;
            rec.pidHolder = await clock.time('pid-holder', startPidHolder(this.config.runtime.infraPath, signal));
          })(),
        ]);
        throwMostTelling(steps);
        await claimed;
        rec.state = 'ready';
        // Not fsynced: a power cut takes the pod's namespaces with it, and startup marks such a
        // pod not ready, which is what the durable version written above already says.
        await clock.time('record-ready', this.records.put(rec, { durable: false }));
        this.log.debug({ sandbox: id, ms: clock.marks }, 'RunPodSandbox steps');
        this.log.info({ sandbox: id, name: key, ips: rec.ips }, 'pod sandbox ready');
        return rec;
      } catch (err) {
        this.log.warn({ sandbox: id, err: errorMessage(err) }, 'pod sandbox failed to start; rolling back');
        await this.release(rec, undefined, { force: true }).catch((e: unknown) => this.log.error({ sandbox: id, err: errorMessage(e) }, 'rollback of a failed sandbox left something behind'));
        await rm(dir, { recursive: true, force: true });
        await this.records.remove(id);
        throw err;
      }
    }).finally(started);
  }

  private networkRequest(sb: SandboxRecord): PodNetworkRequest {
    const md = sb.config.metadata;
    return {
      sandboxId: sb.id,
      name: md?.name ?? '',
      namespace: md?.namespace ?? '',
      uid: md?.uid ?? '',
      netnsPath: sb.netnsPath ?? '',
      portMappings: sb.config.port_mappings.map((p) => ({
        protocol: p.protocol === 'UDP' || p.protocol === 'SCTP' ? p.protocol : 'TCP',
        containerPort: p.container_port,
        hostPort: p.host_port,
        hostIp: p.host_ip,
      })),
      ...(sb.config.dns_config ? { dns: { servers: sb.config.dns_config.servers, searches: sb.config.dns_config.searches, options: sb.config.dns_config.options } } : {}),
      ...(sb.cgroupParent ? { cgroupParent: sb.cgroupParent } : {}),
    };
  }

  /**
   * Frees what a sandbox holds on the host: network, namespaces, /dev/shm, PID holder. Idempotent.
   * CNI DEL runs before the netns goes (bridge finds its per-pod masquerade rules through the pod's
   * interface), and when DEL fails the netns stays pinned so the next StopPodSandbox or
   * RemovePodSandbox retries DEL through it. `force` (rolling back a failed RunPodSandbox, whose ID
   * nobody will retry with) removes the netns anyway; the CNI record stays for the startup sweep.
   */
  private async release(sb: SandboxRecord, signal?: AbortSignal, opts: { force?: boolean } = {}): Promise<void> {
    const errors: unknown[] = [];
    const clock = new StepClock();
    const step = async (fn: () => Promise<void>, name: string): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        errors.push(err);
      }
      clock.mark(name);
    };
    if (sb.netnsPath) {
      const netnsPath = sb.netnsPath;
      const failedBefore = errors.length;
      await step(() => this.net.tearDown(this.networkRequest(sb), signal), 'cni-del');
      if (errors.length === failedBefore || opts.force) await step(() => removeNetns(netnsPath), 'netns');
    }
    if (sb.pidHolder) {
      const holder = sb.pidHolder;
      await step(() => stopPidHolder(holder), 'pid-holder');
    }
    await step(() => unmount([sb.ipcPath, sb.utsPath, join(sb.dir, 'shm')], signal), 'pins+shm');
    this.log.debug({ sandbox: sb.id, ms: clock.marks }, 'sandbox release steps');
    if (errors.length > 0) throw errors[0];
  }

  /** Stops every container, then releases the network and namespaces. Idempotent. */
  async stop(idOrPrefix: string, signal: AbortSignal): Promise<void> {
    const found = this.get(idOrPrefix);
    await this.locks.run(found.id, async () => {
      await this.containers?.stopAllIn(found.id, 0, signal);
      const sb = this.records.get(found.id);
      if (!sb) return;
      // Not ready from here on, even if the release below fails: no new containers in a pod half
      // torn down. A failed release is retried by the next stop or remove.
      if (sb.state !== 'notready') await this.records.put({ ...sb, state: 'notready' });
      await this.release(sb, signal);
      this.log.info({ sandbox: sb.id }, 'pod sandbox stopped');
    });
  }

  /** Stops and removes the sandbox and its containers; an unknown ID is fine (the CRI says so). */
  async remove(idOrPrefix: string, signal: AbortSignal): Promise<void> {
    const found = this.find(idOrPrefix);
    if (!found) return;
    await this.locks.run(found.id, async () => {
      const sb = this.records.get(found.id);
      if (!sb) return;
      await this.containers?.stopAllIn(sb.id, 0, signal);
      await this.containers?.removeAllIn(sb.id, signal);
      await this.release(sb, signal);
      const left = await mountsUnder(sb.dir);
      if (left.length > 0) throw failedPrecondition(`pod sandbox ${sb.id}: ${left.join(', ')} still mounted; retry RemovePodSandbox`);
      await rm(sb.dir, { recursive: true, force: true });
      await this.records.remove(sb.id);
      this.log.info({ sandbox: sb.id }, 'pod sandbox removed');
    });
  }

  list(): SandboxRecord[] {
    return this.records.all();
  }

  /** Rx/tx per interface of the pod's network namespace (empty for host-network pods). */
  async interfaceStats(sb: SandboxRecord, signal?: AbortSignal): Promise<Array<{ name: string; rxBytes: number; rxErrors: number; txBytes: number; txErrors: number }>> {
    if (!sb.netnsPath || sb.state !== 'ready') return [];
    return this.net.interfaceStats(sb.netnsPath, signal);
  }
}
