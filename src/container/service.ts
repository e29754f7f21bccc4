// Containers: records, rootfs, OCI spec, and their life under conmon + the OCI runtime
// (create → start → stop → remove), exit codes from conmon's exit files, and recovery after a
// berthd restart. Lists and status answer from berth's records, never by asking a runtime or a
// monitor, so one hung conmon cannot slow calls about other containers.
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess, type StdioNull, type StdioPipe } from 'node:child_process';
import { watch, writeFileSync, type FSWatcher } from 'node:fs';
import { constants, mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import { finished } from 'node:stream/promises';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { BerthConfig } from '../config/config.ts';
import type { ContainerConfig__Output } from '../cri/gen/runtime/v1/ContainerConfig.ts';
import type { LinuxContainerResources__Output } from '../cri/gen/runtime/v1/LinuxContainerResources.ts';
import type { ImageService } from '../image/service.ts';
import { conmonCreate } from '../oci/conmon.ts';
import { OciRuntime } from '../oci/runtime.ts';
import { buildSpec } from '../oci/spec.ts';
import { hostOomScoreAdjFloor, linuxResources } from '../oci/resources.ts';
import { cgroupsPathFor } from '../cgroups/path.ts';
import { cgroupVersion } from '../cgroups/version.ts';
import { readCgroupStats, type CgroupStats } from '../cgroups/stats.ts';
import type { OciSpec } from '../oci/types.ts';
import type { Owner, SandboxRecord } from '../sandbox/record.ts';
import type { PodContainers, SandboxService } from '../sandbox/service.ts';
import { RecordDir } from '../store/record-dir.ts';
import { alreadyExists, BerthError, errorMessage, failedPrecondition, invalidArgument, notFound } from '../util/errors.ts';
import { KeyedMutex } from '../util/keyed-mutex.ts';
import { StepClock } from '../util/step-clock.ts';
import { WarmSpawner } from '../util/warm-spawn.ts';
import { findBinary } from '../runtime-probe.ts';
import { ContainerEvents, type ContainerEventKind } from './events.ts';
import { ExecHelpers, type HelperExec } from './exec-helper.ts';
import { isContainerRecord, type ContainerRecord } from './record.ts';
import { imageVolumes, mountRootfs, removeLayer, unmountRootfs, writableUsage } from './rootfs.ts';

/** How long SIGKILL may take to end a container before StopContainer gives up. */
const KILL_WAIT_MS = 10_000;
/** How long ReopenContainerLog waits for conmon to create the new log file. */
const LOG_REOPEN_WAIT_MS = 5000;
/** ExecSync output kept per stream. */
const MAX_EXEC_OUTPUT = 16 << 20;

/** stdin, stdout and stderr of an exec'd process: pipes, nothing, or a file descriptor (a terminal). */
export type ExecStdio = [StdioPipe | StdioNull | number, StdioPipe | StdioNull | number, StdioPipe | StdioNull | number];

export interface CreateContainerOptions {
  sandboxId: string;
  config: ContainerConfig__Output;
  owner: Owner;
}

export interface ExecResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

const nowNs = (): number => Date.now() * 1e6;

export class ContainerService implements PodContainers {
  readonly records: RecordDir<ContainerRecord>;
  readonly events = new ContainerEvents();
  private readonly config: BerthConfig;
  private readonly log: Logger;
  private readonly images: ImageService;
  private readonly sandboxes: SandboxService;
  private readonly locks = new KeyedMutex();
  private readonly runtimes = new Map<string, OciRuntime>();
  /** Starts `runc exec` with pipes without forking berthd on the exec's path. */
  private readonly spawner = new WarmSpawner();
  /**
   * Each container's process spec as its config.json holds it, read at its first exec. The file
   * is written once at create and never rewritten (UpdateContainerResources goes to the runtime
   * and the record), and it carries the whole seccomp profile: parsing it cost ~2-3 ms per exec.
   */
  private readonly execProcesses = new Map<string, Promise<OciSpec['process'] | undefined>>();
  /** Each running container's exec helper, which forks execs without a `runc exec` each. */
  private readonly helpers: ExecHelpers;
  /** Names being created, so two creates of one name cannot both pass the clash check. */
  private readonly pendingKeys = new Set<string>();
  /** Containers whose StartContainer is running (see start()). */
  private readonly starting = new Set<string>();
  /** Waiters for a container's exit, woken by the exit-file watcher. */
  private readonly exitWaiters = new Map<string, Set<() => void>>();
  private readonly exitDir: string;
  private watcher: FSWatcher | undefined;
  private oomFloor = 0;
  private cgroupVersion: 1 | 2 = 1;

  constructor(config: BerthConfig, log: Logger, images: ImageService, sandboxes: SandboxService) {
    this.config = config;
    this.log = log;
    this.images = images;
    this.sandboxes = sandboxes;
    this.records = new RecordDir(join(config.root, 'metadata', 'containers'), isContainerRecord);
    this.exitDir = join(config.state, 'exits');
    this.helpers = new ExecHelpers(config.runtime.execHelper, config.state, log);
    sandboxes.attach(this);
  }

  private runtime(handler: string): OciRuntime {
    const rt = this.runtimes.get(handler);
    if (rt) return rt;
    const h = this.config.runtime.handlers[handler];
    if (!h) throw invalidArgument(`runtime handler ${JSON.stringify(handler)} is not configured`);
    throw failedPrecondition(`runtime handler ${handler}: binary ${h.path} was not found when berthd started; install it and restart berthd`);
  }

  private bundle(id: string): string {
    return join(this.config.state, 'containers', id);
  }

  private layerDir(id: string): string {
    return join(this.config.root, 'containers', id);
  }

  /** Loads records, picks up exits that happened while berthd was down, and starts watching for exits. */
  async init(): Promise<void> {
    // conmon execs the runtime by path, so resolve each handler's binary once.
    for (const [name, h] of Object.entries(this.config.runtime.handlers)) {
      const path = await findBinary(h.path);
      if (path) this.runtimes.set(name, new OciRuntime(name, path, join(this.config.state, 'runtime', name)));
      else this.log.warn({ handler: name, path: h.path }, 'runtime handler binary not found; pods asking for it will fail');
    }
    await mkdir(this.exitDir, { recursive: true, mode: 0o700 });
    await mkdir(join(this.config.state, 'attach'), { recursive: true, mode: 0o700 });
    await this.helpers.init();
    this.oomFloor = await hostOomScoreAdjFloor();
    this.cgroupVersion = await cgroupVersion();
    for (const path of await this.records.load()) this.log.warn({ path }, 'unreadable container record moved aside; that container is forgotten');
    await this.sweepOrphans();
    this.watcher = watch(this.exitDir, (_event, file) => {
      if (file && /^[a-f0-9]{64}$/.test(file)) void this.noticeExit(file);
    });
    for (const rec of this.records.all()) {
      if (rec.state === 'exited') continue;
      if (await this.noticeExit(rec.id)) continue;
      if (rec.conmonPid > 0 && (await conmonAlive(rec.conmonPid, rec.id))) continue;
      // The monitor is gone without writing an exit code: a reboot or a killed conmon.
      this.log.warn({ container: rec.id }, 'container monitor vanished while berthd was down; marking the container exited');
      await this.records.put({ ...rec, state: 'exited', exitCode: 255, finishedAt: rec.finishedAt || nowNs(), reason: 'Unknown', message: 'the container monitor (conmon) exited without recording an exit code' });
    }
    // Helpers of containers that stopped or went while berthd was down; running ones are reconnected to.
    await this.helpers.sweep((id) => this.records.get(id)?.state === 'running');
  }

  /**
   * Removes containers berth has no record of: a create cut short by a crash (the record is written
   * last) or a record moved aside as corrupt. Their runtime state, mounts, layers and leases go.
   */
  private async sweepOrphans(): Promise<void> {
    const ids = new Set<string>();
    for (const dir of [join(this.config.state, 'containers'), join(this.config.root, 'containers')]) {
      for (const name of await readdir(dir).catch(() => [] as string[])) {
        if (/^[a-f0-9]{64}$/.test(name) && !this.records.get(name)) ids.add(name);
      }
    }
    for (const id of ids) {
      for (const rt of this.runtimes.values()) await rt.delete(id).catch(() => undefined);
      await this.cleanup(id, undefined, { conmonPid: 0, created: false });
      this.log.warn({ container: id }, 'removed a container berth has no record of');
    }
  }

  close(): void {
    this.watcher?.close();
    this.spawner.close();
    this.helpers.close();
  }

  get(idOrPrefix: string): ContainerRecord {
    const rec = this.records.find(idOrPrefix, 'container');
    if (!rec) throw notFound(`container ${JSON.stringify(idOrPrefix)} not found`);
    return rec;
  }

  list(): ContainerRecord[] {
    return this.records.all();
  }

  private emit(rec: ContainerRecord, kind: ContainerEventKind): void {
    this.events.emit({ containerId: rec.id, sandboxId: rec.sandboxId, kind, at: nowNs() });
  }

  async create(opts: CreateContainerOptions, signal: AbortSignal): Promise<ContainerRecord> {
    const { config } = opts;
    const md = config.metadata;
    if (!md?.name) throw invalidArgument('container metadata with a name is required');
    const imageName = config.image?.image;
    if (!imageName) throw invalidArgument('container image is required');
    for (const m of config.mounts) {
      if (!m.host_path || !isAbsolute(m.host_path)) throw invalidArgument(`mount host_path ${JSON.stringify(m.host_path)} must be an absolute path`);
    }
    const sandbox = this.sandboxes.get(opts.sandboxId);
    if (sandbox.state !== 'ready') throw failedPrecondition(`pod sandbox ${sandbox.id} is not ready; containers can only be created in a ready sandbox`);
    const key = `${md.name}_${md.attempt}`;
    const holder = this.records.all().find((c) => c.sandboxId === sandbox.id && c.key === key);
    if (holder || this.pendingKeys.has(`${sandbox.id}/${key}`)) {
      throw alreadyExists(`container name ${md.name} (attempt ${md.attempt}) is already used in pod ${sandbox.id}${holder ? ` by container ${holder.id}` : ''}; remove it first`);
    }
    const pending = `${sandbox.id}/${key}`;
    this.pendingKeys.add(pending);
    const id = randomBytes(32).toString('hex');
    try {
      return await this.locks.run(id, () => this.createLocked(id, key, sandbox, opts, signal));
    } finally {
      this.pendingKeys.delete(pending);
    }
  }

  private async createLocked(id: string, key: string, sandbox: SandboxRecord, opts: CreateContainerOptions, signal: AbortSignal): Promise<ContainerRecord> {
    const { config } = opts;
    const rt = this.runtime(sandbox.runtimeHandler);
    const bundle = this.bundle(id);
    const layerDir = this.layerDir(id);
    const rootfs = join(bundle, 'rootfs');
    const holder = `container/${id}`;
    let conmonPid = 0;
    let created = false;
    const clock = new StepClock();
    try {
      const image = await clock.time('lease', this.images.lease(holder, config.image?.image ?? ''));
      await mkdir(bundle, { recursive: true, mode: 0o700 });
      await clock.time('rootfs', mountRootfs({ layerDir, target: rootfs }, image.lowerDirs, signal));
      const taken = new Set(config.mounts.map((m) => m.container_path.replace(/(.)\/$/, '$1')));
      const volumes = await clock.time('volumes', imageVolumes(layerDir, rootfs, Object.keys(image.config.config?.Volumes ?? {}), taken, signal));
      let targetPid: number | undefined;
      const nsOpts = config.linux?.security_context?.namespace_options;
      if (nsOpts?.pid === 'TARGET') {
        const target = this.records.find(nsOpts.target_id, 'container');
        if (!target || target.state !== 'running') throw invalidArgument(`pid namespace target ${JSON.stringify(nsOpts.target_id)} is not a running container`);
        targetPid = target.pid;
      }
      const cgroupsPath = this.cgroupsPath(sandbox, id);
      const built = await buildSpec({ config, sandbox, image: image.config, rootfs, volumes, cgroupsPath, targetPid, oomScoreAdjFloor: this.oomFloor, cgroupVersion: this.cgroupVersion });
      await writeFile(join(bundle, 'config.json'), JSON.stringify(built.spec));
      clock.mark('spec');

      const logDir = sandbox.config.log_directory;
      const logPath = logDir && config.log_path ? join(logDir, config.log_path) : '';
      if (logPath) await mkdir(dirname(logPath), { recursive: true, mode: 0o755 });
      const stopSignal = signalName(config.stop_signal) ?? image.config.config?.StopSignal ?? 'SIGTERM';

      created = true;
      const started = await clock.time('conmon+create', conmonCreate({
        conmonPath: this.config.runtime.conmonPath,
        runtime: rt,
        id,
        name: key,
        bundle,
        logPath: logPath || join(bundle, 'output.log'),
        exitDir: this.exitDir,
        socketDir: join(this.config.state, 'attach'),
        conmonPidFile: join(bundle, 'conmon.pid'),
        containerPidFile: join(bundle, 'pid'),
        terminal: config.tty,
        stdin: config.stdin,
        stdinOnce: config.stdin_once,
        systemdCgroup: this.config.cgroupDriver === 'systemd',
        timeoutMs: 60_000,
        signal,
      }));
      conmonPid = started.conmonPid;
      const rec: ContainerRecord = {
        id,
        owner: opts.owner,
        sandboxId: sandbox.id,
        key,
        config,
        image: { requested: config.image?.image ?? '', id: image.id, ref: image.ref },
        runtimeHandler: sandbox.runtimeHandler,
        state: 'created',
        createdAt: nowNs(),
        startedAt: 0,
        finishedAt: 0,
        exitCode: 0,
        reason: '',
        message: '',
        logPath,
        mounts: built.mounts.map((m) => ({
          container_path: m.destination,
          host_path: m.source ?? '',
          readonly: m.options?.includes('ro') ?? false,
          propagation: m.options?.includes('rshared') ? 'PROPAGATION_BIDIRECTIONAL' : m.options?.includes('rslave') ? 'PROPAGATION_HOST_TO_CONTAINER' : 'PROPAGATION_PRIVATE',
        })),
        pid: started.pid,
        conmonPid,
        stopSignal,
        cgroupsPath,
      };
      await clock.time('record', this.records.put(rec));
      this.log.debug({ container: id, ms: clock.marks }, 'CreateContainer steps');
      this.emit(rec, 'CONTAINER_CREATED_EVENT');
      this.log.info({ container: id, sandbox: sandbox.id, name: key }, 'container created');
      return rec;
    } catch (err) {
      this.log.warn({ container: id, err: errorMessage(err) }, 'container create failed; rolling back');
      await this.cleanup(id, rt, { conmonPid, created }).catch((e: unknown) => this.log.error({ container: id, err: errorMessage(e) }, 'rollback of a failed create left something behind'));
      throw err;
    }
  }

  private cgroupsPath(sandbox: SandboxRecord, id: string): string {
    // Without a parent from the kubelet, berth's containers gather under one cgroup of their own.
    const parent = sandbox.cgroupParent || (this.config.cgroupDriver === 'systemd' ? '' : '/berth');
    return cgroupsPathFor(this.config.cgroupDriver, parent, id);
  }

  /** Removes everything a container has on the host, in the order that cannot strand anything. */
  private async cleanup(id: string, rt: OciRuntime | undefined, o: { conmonPid: number; created: boolean; exited?: boolean }, clock = new StepClock()): Promise<void> {
    if (rt && o.created) {
      // A container known to have exited needs no kill (one runc exec less on RemoveContainer).
      if (!o.exited) await clock.time('runtime-kill', rt.kill(id, 'SIGKILL').catch(() => undefined));
      await clock.time('runtime-delete', rt.delete(id));
    }
    // A create cut off by its deadline may have left conmon running before berth learnt its PID.
    const conmonPid = o.conmonPid || Number((await readFile(join(this.bundle(id), 'conmon.pid'), 'utf8').catch(() => '')).trim());
    if (conmonPid > 0 && (await conmonAlive(conmonPid, id))) {
      try {
        process.kill(conmonPid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    clock.mark('conmon');
    await clock.time('unmount', unmountRootfs({ layerDir: this.layerDir(id), target: join(this.bundle(id), 'rootfs') }));
    await clock.time('rm-bundle', rm(this.bundle(id), { recursive: true, force: true }));
    await clock.time('rm-layer', removeLayer(this.layerDir(id)));
    await rm(join(this.exitDir, id), { force: true });
    await this.helpers.forget(id);
    this.execProcesses.delete(id);
    await clock.time('lease', this.images.releaseLease(`container/${id}`));
  }

  async start(idOrPrefix: string, signal: AbortSignal): Promise<void> {
    const found = this.get(idOrPrefix);
    await this.locks.run(found.id, async () => {
      const rec = this.get(found.id);
      if (rec.state !== 'created') throw failedPrecondition(`container ${rec.id} is ${rec.state}; only a created container can be started`);
      const sandbox = this.sandboxes.find(rec.sandboxId);
      if (!sandbox || sandbox.state !== 'ready') throw failedPrecondition(`pod sandbox ${rec.sandboxId} of container ${rec.id} is not ready`);
      // Taken before the start, so a process that exits at once never finishes before it started.
      const startedAt = nowNs();
      // An exit noticed while the start is in flight waits for it, so "started" is recorded (and
      // sent to event streams) before "stopped".
      this.starting.add(rec.id);
      try {
        await this.runtime(rec.runtimeHandler).start(rec.id, signal);
        await this.records.put({ ...this.get(rec.id), startedAt, state: 'running' });
        this.emit(rec, 'CONTAINER_STARTED_EVENT');
        this.log.info({ container: rec.id }, 'container started');
      } finally {
        this.starting.delete(rec.id);
        // An exit skipped while starting (also when the start failed) is recorded now.
        await this.noticeExit(rec.id);
      }
    });
  }

  /**
   * Reads the container's exit file, if conmon wrote one, and records the exit. Returns whether
   * the container has exited.
   */
  private async noticeExit(id: string): Promise<boolean> {
    const rec = this.records.get(id);
    if (!rec) return false;
    if (rec.state === 'exited') return true;
    if (this.starting.has(id)) return false;
    // The file's mtime comes from the kernel's coarse clock and may read a few ms before the start
    // time berth took; an exit is never reported before its start.
    const file = join(this.exitDir, id);
    let text: string;
    let mtimeMs: number;
    try {
      text = await readFile(file, 'utf8');
      mtimeMs = (await stat(file)).mtimeMs;
    } catch {
      return false;
    }
    const code = Number.parseInt(text.trim(), 10);
    const exitCode = Number.isFinite(code) && code >= 0 ? code : 255;
    const oom = await oomKilled(rec.cgroupsPath);
    const cur = this.records.get(id);
    if (!cur || cur.state === 'exited') return true;
    const reason = oom ? 'OOMKilled' : exitCode === 0 ? 'Completed' : 'Error';
    await this.records.put({ ...cur, state: 'exited', exitCode, finishedAt: Math.max(Math.round(mtimeMs * 1e6), cur.startedAt), reason });
    this.emit(cur, 'CONTAINER_STOPPED_EVENT');
    this.log.info({ container: id, exitCode, reason }, 'container exited');
    // In a pod-shared PID namespace the helper would outlive the container's init.
    await this.helpers.forget(id).catch((err: unknown) => this.log.warn({ container: id, err: errorMessage(err) }, 'could not end the exec helper of an exited container'));
    for (const wake of this.exitWaiters.get(id) ?? []) wake();
    return true;
  }

  /** Resolves true when the container exits within `ms`, false otherwise. */
  private async waitExit(id: string, ms: number, signal: AbortSignal): Promise<boolean> {
    if (await this.noticeExit(id)) return true;
    return new Promise<boolean>((resolve) => {
      const waiters = this.exitWaiters.get(id) ?? new Set();
      this.exitWaiters.set(id, waiters);
      const finish = (v: boolean): void => {
        clearTimeout(timer);
        waiters.delete(wake);
        if (waiters.size === 0) this.exitWaiters.delete(id);
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      };
      const wake = (): void => finish(true);
      const onAbort = (): void => finish(false);
      const timer = setTimeout(() => void this.noticeExit(id).then(finish), ms);
      waiters.add(wake);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** StopSignal (or SIGTERM), then SIGKILL after `timeoutSeconds`. Stopping a stopped container is fine. */
  async stop(idOrPrefix: string, timeoutSeconds: number, signal: AbortSignal): Promise<void> {
    const found = this.get(idOrPrefix);
    await this.locks.run(found.id, () => this.stopLocked(found.id, timeoutSeconds, signal));
  }

  private async stopLocked(id: string, timeoutSeconds: number, signal: AbortSignal): Promise<void> {
    const rec = this.records.get(id);
    if (!rec || rec.state === 'exited') return;
    const rt = this.runtime(rec.runtimeHandler);
    // Processes in a shared PID namespace outlive the container's init; --all reaches them too.
    const all = (rec.config.linux?.security_context?.namespace_options?.pid ?? 'POD') !== 'CONTAINER';
    if (rec.state === 'running' && timeoutSeconds > 0) {
      await rt.kill(id, rec.stopSignal, { signal });
      if (await this.waitExit(id, timeoutSeconds * 1000, signal)) return;
    }
    signal.throwIfAborted();
    await rt.kill(id, 'SIGKILL', { all, signal });
    if (rec.state === 'created') {
      // A container that never started has no exit for conmon to report until runc lets go of it.
      if (!(await this.waitExit(id, KILL_WAIT_MS, signal))) {
        await this.records.put({ ...rec, state: 'exited', exitCode: 137, finishedAt: nowNs(), reason: 'Error', message: 'killed before it started' });
        this.emit(rec, 'CONTAINER_STOPPED_EVENT');
      }
      return;
    }
    if (!(await this.waitExit(id, KILL_WAIT_MS, signal))) {
      signal.throwIfAborted();
      throw new BerthError('unavailable', `container ${id} did not exit within ${KILL_WAIT_MS / 1000} s of SIGKILL; its monitor (conmon pid ${rec.conmonPid}) may be hung`);
    }
  }

  /** Removes the container and all it holds; an unknown ID is fine (the CRI makes removal idempotent). */
  async remove(idOrPrefix: string, signal: AbortSignal): Promise<void> {
    const found = this.records.find(idOrPrefix, 'container');
    if (!found) return;
    await this.locks.run(found.id, async () => {
      const rec = this.records.get(found.id);
      if (!rec) return;
      const clock = new StepClock();
      if (rec.state !== 'exited') await this.stopLocked(rec.id, 0, signal).catch((err: unknown) => this.log.warn({ container: rec.id, err: errorMessage(err) }, 'container did not stop cleanly before removal'));
      clock.mark('stop');
      const exited = this.records.get(rec.id)?.state === 'exited';
      await this.cleanup(rec.id, this.runtime(rec.runtimeHandler), { conmonPid: rec.conmonPid, created: true, exited }, clock);
      await clock.time('record', this.records.remove(rec.id));
      this.log.debug({ container: rec.id, ms: clock.marks }, 'RemoveContainer steps');
      this.emit(rec, 'CONTAINER_DELETED_EVENT');
      this.log.info({ container: rec.id }, 'container removed');
    });
  }

  async stopAllIn(sandboxId: string, graceSeconds: number, signal: AbortSignal): Promise<void> {
    const mine = this.records.all().filter((c) => c.sandboxId === sandboxId && c.state !== 'exited');
    const results = await Promise.allSettled(mine.map((c) => this.stop(c.id, graceSeconds, signal)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  async removeAllIn(sandboxId: string, signal: AbortSignal): Promise<void> {
    const mine = this.records.all().filter((c) => c.sandboxId === sandboxId);
    const results = await Promise.allSettled(mine.map((c) => this.remove(c.id, signal)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** The container's spec as written for the runtime (verbose status, exec). */
  async spec(id: string): Promise<OciSpec | undefined> {
    try {
      return JSON.parse(await readFile(join(this.bundle(id), 'config.json'), 'utf8')) as OciSpec;
    } catch {
      return undefined;
    }
  }

  /** The running container an exec goes to, and the process spec execs start from (see execProcesses). */
  private async execTarget(idOrPrefix: string, args: string[]): Promise<{ rec: ContainerRecord; processSpec: NonNullable<OciSpec['process']> }> {
    const rec = this.get(idOrPrefix);
    if (rec.state !== 'running') throw failedPrecondition(`container ${rec.id} is ${rec.state}; exec needs a running container`);
    if (args.length === 0) throw invalidArgument('exec needs a command');
    let process = this.execProcesses.get(rec.id);
    if (!process) {
      process = this.spec(rec.id).then((spec) => spec?.process);
      this.execProcesses.set(rec.id, process);
    }
    const processSpec = await process;
    if (!processSpec) {
      this.execProcesses.delete(rec.id);
      throw failedPrecondition(`container ${rec.id} has no runtime spec; it cannot be exec'd into`);
    }
    return { rec, processSpec };
  }

  /**
   * Starts a process in a running container through the container's exec helper (started on
   * the first exec). Undefined when the container has none (disabled, or it could not start):
   * use spawnExec then.
   */
  async helperExec(idOrPrefix: string, args: string[], opts: { tty: boolean; stdin: boolean }, signal: AbortSignal): Promise<HelperExec | undefined> {
    const { rec, processSpec } = await this.execTarget(idOrPrefix, args);
    return this.helpers.open(rec.id, args, opts, () => ({ runtime: this.runtime(rec.runtimeHandler), process: processSpec, bundle: this.bundle(rec.id) }), signal);
  }

  /**
   * Starts a process in a running container through the runtime's `exec`, with the caller's stdio
   * (pipes for ExecSync; the streaming server passes its own). The process gets the container's
   * user, environment, capabilities and working directory. `done` removes the temp files.
   */
  async spawnExec(idOrPrefix: string, args: string[], opts: { tty: boolean; stdio: ExecStdio }): Promise<{ child: ChildProcess; pidFile: string; done: () => Promise<void> }> {
    const { rec, processSpec } = await this.execTarget(idOrPrefix, args);
    const tag = randomBytes(6).toString('hex');
    const processFile = join(this.bundle(rec.id), `exec-${tag}.json`);
    const pidFile = join(this.bundle(rec.id), `exec-${tag}.pid`);
    // Written synchronously (a few KiB into the state dir, tens of microseconds): an async write
    // waits its turn behind the session's network events and a busy thread pool, which put
    // 1-5 ms between the upgrade and runc's start.
    writeFileSync(processFile, JSON.stringify({ ...processSpec, args, terminal: opts.tty }));
    const rt = this.runtime(rec.runtimeHandler);
    const runtimeArgs = rt.execArgs(rec.id, processFile, pidFile, { tty: opts.tty });
    const [stdin, stdout, stderr] = opts.stdio;
    let child: ChildProcess;
    if ((stdin === 'pipe' || stdin === 'ignore') && stdout === 'pipe' && stderr === 'pipe') {
      child = this.spawner.spawn(rt.path, runtimeArgs);
      // A warm process always has a stdin pipe: ending it gives the process EOF, as /dev/null would.
      if (stdin === 'ignore') child.stdin?.on('error', () => {}).end();
    } else child = spawn(rt.path, runtimeArgs, { stdio: opts.stdio });
    const done = async (): Promise<void> => {
      await rm(processFile, { force: true });
      await rm(pidFile, { force: true });
    };
    return { child, pidFile, done };
  }

  /** Runs a command to completion; past `timeoutSeconds` (0 = none) it is killed and the call fails. */
  async execSync(idOrPrefix: string, cmd: string[], timeoutSeconds: number, signal: AbortSignal): Promise<ExecResult> {
    const helped = await this.helperExec(idOrPrefix, cmd, { tty: false, stdin: false }, signal);
    if (helped) return this.execSyncHelped(helped, cmd, timeoutSeconds, signal);
    const { child, pidFile, done } = await this.spawnExec(idOrPrefix, cmd, { tty: false, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = new OutputCap();
    const err = new OutputCap();
    child.stdout?.on('data', (c: Buffer) => out.add(c));
    child.stderr?.on('data', (c: Buffer) => err.add(c));
    let fallback: NodeJS.Timeout | undefined;
    // Kill the exec'd process and let `runc exec` reap it and exit, so it is gone (not a zombie
    // left to the pod's init) when the call returns; killing `runc exec` alone would leave it
    // running in the container. runc itself is killed only if it does not follow.
    const limits = new ExecSyncLimits(cmd, timeoutSeconds, signal, async () => {
      const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
      if (pid > 0) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
        fallback = setTimeout(() => child.kill('SIGKILL'), 2000);
      } else {
        child.kill('SIGKILL');
      }
    });
    try {
      const code = await new Promise<number>((resolve, reject) => {
        child.once('error', (e) => reject(new BerthError('failed-precondition', `exec in container: cannot run the runtime: ${e.message}`)));
        child.once('close', (c, sig) => resolve(c ?? (sig ? 128 + 9 : 255)));
      });
      limits.throwIfHit();
      return { stdout: out.bytes(), stderr: err.bytes(), exitCode: code };
    } finally {
      limits.dispose();
      clearTimeout(fallback);
      await done();
    }
  }

  /** ExecSync through the container's exec helper: the same caps, deadline and cancelling as through the runtime. */
  private async execSyncHelped(h: HelperExec, cmd: string[], timeoutSeconds: number, signal: AbortSignal): Promise<ExecResult> {
    const out = new OutputCap();
    const err = new OutputCap();
    h.stdout.on('data', (c: Buffer) => out.add(c));
    h.stderr.on('data', (c: Buffer) => err.add(c));
    let fallback: NodeJS.Timeout | undefined;
    const limits = new ExecSyncLimits(cmd, timeoutSeconds, signal, () => {
      h.kill();
      // The exit follows the kill; a helper that does not answer loses the connection, which ends the wait.
      fallback = setTimeout(() => h.destroy(), 2000);
    });
    try {
      const code = await h.exit.catch((e: unknown) => {
        limits.throwIfHit();
        throw e;
      });
      // Both streams end with the exit; output buffered before the listeners came flows out first.
      await Promise.all([finished(h.stdout), finished(h.stderr)]);
      limits.throwIfHit();
      return { stdout: out.bytes(), stderr: err.bytes(), exitCode: code };
    } finally {
      limits.dispose();
      clearTimeout(fallback);
      h.destroy();
    }
  }

  /** Applies new resource limits to a created or running container and remembers them. */
  async updateResources(idOrPrefix: string, resources: LinuxContainerResources__Output, signal: AbortSignal): Promise<void> {
    const found = this.get(idOrPrefix);
    await this.locks.run(found.id, async () => {
      const rec = this.get(found.id);
      if (rec.state === 'exited') throw failedPrecondition(`container ${rec.id} has exited; its resources cannot be updated`);
      await this.runtime(rec.runtimeHandler).update(rec.id, linuxResources(resources, { cgroupVersion: this.cgroupVersion }), signal);
      const linux = rec.config.linux ?? { resources: null, security_context: null };
      await this.records.put({ ...rec, config: { ...rec.config, linux: { ...linux, resources } } });
    });
  }

  /**
   * Usage of one container: its cgroup's figures (absent once the cgroup is gone) and its writable
   * layer. Read from the kernel and the disk, never through the runtime or conmon.
   */
  async stats(rec: ContainerRecord, signal?: AbortSignal): Promise<{ cgroup?: CgroupStats; writable: { bytes: number; inodes: number }; timestamp: number }> {
    const [cgroup, writable] = await Promise.all([
      rec.state === 'exited' ? undefined : readCgroupStats(rec.cgroupsPath, { version: this.cgroupVersion }).catch(() => undefined),
      writableUsage(this.layerDir(rec.id), signal),
    ]);
    return { ...(cgroup ? { cgroup } : {}), writable, timestamp: nowNs() };
  }

  /** Where container layers live, for the filesystem ID stats report. */
  get layerRoot(): string {
    return join(this.config.root, 'containers');
  }

  /** Asks conmon to reopen the log file (after the kubelet rotated it). */
  async reopenLog(idOrPrefix: string): Promise<void> {
    const rec = this.get(idOrPrefix);
    if (rec.state !== 'running') throw failedPrecondition(`container ${rec.id} is ${rec.state}; only a running container's log can be reopened`);
    let fh;
    try {
      fh = await open(join(this.bundle(rec.id), 'ctl'), constants.O_WRONLY | constants.O_NONBLOCK);
    } catch (err) {
      throw failedPrecondition(`container ${rec.id}: its monitor's control pipe cannot be opened (${errorMessage(err)}); is conmon running?`);
    }
    try {
      // Message type 2 = reopen the log files (conmon's ctl protocol: "<type> <height> <width>").
      await fh.write('2 0 0\n');
    } finally {
      await fh.close();
    }
    // conmon acts on the message in its own time; the kubelet expects the new file once this returns.
    if (!rec.logPath) return;
    const deadline = Date.now() + LOG_REOPEN_WAIT_MS;
    while (Date.now() < deadline) {
      if (await stat(rec.logPath).then(() => true, () => false)) return;
      await delay(10);
    }
    throw new BerthError('unavailable', `container ${rec.id}: conmon did not reopen ${rec.logPath} within ${LOG_REOPEN_WAIT_MS / 1000} s`);
  }
}

/**
 * ExecSync's two ways to end before its command does: the timeout and the client cancelling. The
 * first to come kills the command (`kill`, once) and becomes the call's error.
 */
class ExecSyncLimits {
  #hit: BerthError | undefined;
  readonly #timer: NodeJS.Timeout | undefined;
  readonly #signal: AbortSignal;
  readonly #onAbort: () => void;

  constructor(cmd: string[], timeoutSeconds: number, signal: AbortSignal, kill: () => unknown) {
    const end = (e: BerthError): void => {
      if (this.#hit) return;
      this.#hit = e;
      void kill();
    };
    this.#signal = signal;
    this.#onAbort = () => end(new BerthError('cancelled', 'the client cancelled ExecSync'));
    this.#timer = timeoutSeconds > 0 ? setTimeout(() => end(new BerthError('deadline-exceeded', `command ${JSON.stringify(cmd.join(' '))} timed out after ${timeoutSeconds} s`)), timeoutSeconds * 1000) : undefined;
    if (signal.aborted) this.#onAbort();
    else signal.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** Throws the timeout or cancel error when either ended the command. */
  throwIfHit(): void {
    if (this.#hit) throw this.#hit;
  }

  dispose(): void {
    clearTimeout(this.#timer);
    this.#signal.removeEventListener('abort', this.#onAbort);
  }
}

/** One stream of ExecSync output: the first MAX_EXEC_OUTPUT bytes are kept, the rest counted and dropped. */
class OutputCap {
  private readonly chunks: Buffer[] = [];
  private len = 0;

  add(c: Buffer): void {
    if (this.len < MAX_EXEC_OUTPUT) this.chunks.push(c);
    this.len += c.length;
  }

  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** Whether `pid` is still the conmon that monitors container `id` (PIDs get reused). */
async function conmonAlive(pid: number, id: string): Promise<boolean> {
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(id) && cmdline.includes('conmon');
  } catch {
    return false;
  }
}

/** Whether the memory cgroup recorded an OOM kill (v1 memory.oom_control, v2 memory.events). */
async function oomKilled(cgroupsPath: string): Promise<boolean> {
  if (cgroupsPath.includes(':')) return false;
  for (const file of [`/sys/fs/cgroup/memory${cgroupsPath}/memory.oom_control`, `/sys/fs/cgroup${cgroupsPath}/memory.events`]) {
    try {
      const m = /oom_kill (\d+)/.exec(await readFile(file, 'utf8'));
      if (m) return Number(m[1]) > 0;
    } catch {
      // not this cgroup version
    }
  }
  return false;
}

/** A CRI Signal enum name as the runtime's kill wants it; RUNTIME_DEFAULT → undefined. */
function signalName(sig: string | number | undefined): string | undefined {
  if (typeof sig !== 'string' || !sig.startsWith('SIGNAL_SIG')) return undefined;
  return sig.slice('SIGNAL_'.length);
}
