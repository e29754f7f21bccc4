// The OCI runtime binary (runc, crun, …) for one handler: every call berth makes to it after conmon
// has created a container, each with a deadline and the caller's AbortSignal. Its state lives under
// `<state>/runtime/<handler>` (`--root`), so several berthd instances never see each other's
// containers.
import { runCommand, type RunResult } from '../util/run-command.ts';
import { BerthError } from '../util/errors.ts';

/** Runtime calls that should be instant (kill, start, delete, state). */
const QUICK_MS = 15_000;

export interface RuntimeState {
  status: string;
  pid: number;
}

export class OciRuntime {
  readonly handler: string;
  readonly path: string;
  readonly root: string;

  constructor(handler: string, path: string, root: string) {
    this.handler = handler;
    this.path = path;
    this.root = root;
  }

  /** Global flags conmon must pass when it runs `create` for berth. */
  globalArgs(): string[] {
    return [`--root=${this.root}`];
  }

  private run(args: string[], step: string, signal?: AbortSignal, opts: { input?: string; allowFailure?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
    return runCommand(this.path, [...this.globalArgs(), ...args], {
      step: `${this.handler} ${step}`,
      timeoutMs: opts.timeoutMs ?? QUICK_MS,
      signal,
      input: opts.input,
      ...(opts.allowFailure ? { okCodes: [1] } : {}),
    });
  }

  async start(id: string, signal?: AbortSignal): Promise<void> {
    await this.run(['start', id], `start ${id}`, signal);
  }

  /** Sends a signal; a container that already stopped is fine. */
  async kill(id: string, sig: string, opts: { all?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    const res = await this.run(['kill', ...(opts.all ? ['--all'] : []), id, sig], `kill ${id} ${sig}`, opts.signal, { allowFailure: true });
    if (res.code !== 0 && !/not running|does not exist|process already finished|no such process/i.test(res.stderr)) {
      throw new BerthError('internal', `${this.handler} kill ${id} ${sig} failed: ${res.stderr.trim()}`);
    }
  }

  /** Forgets the container (and removes its cgroup); an unknown container is fine. */
  async delete(id: string, signal?: AbortSignal): Promise<void> {
    const res = await this.run(['delete', '--force', id], `delete ${id}`, signal, { allowFailure: true });
    if (res.code !== 0 && !/does not exist|not exist/i.test(res.stderr)) {
      throw new BerthError('internal', `${this.handler} delete ${id} failed: ${res.stderr.trim()}`);
    }
  }

  /** The runtime's view of the container, or undefined when it does not know it. */
  async state(id: string, signal?: AbortSignal): Promise<RuntimeState | undefined> {
    const res = await this.run(['state', id], `state ${id}`, signal, { allowFailure: true });
    if (res.code !== 0) return undefined;
    const parsed = JSON.parse(res.stdout) as Partial<RuntimeState>;
    return { status: String(parsed.status ?? 'unknown'), pid: Number(parsed.pid ?? 0) };
  }

  /** Applies new cgroup limits (a runtime-spec LinuxResources object) to a live container. */
  async update(id: string, resources: object, signal?: AbortSignal): Promise<void> {
    await this.run(['update', '--resources', '-', id], `update ${id}`, signal, { input: JSON.stringify(resources) });
  }

  /**
   * The runtime's argv (binary first) for a detached `exec` of a process spec that keeps fds 3 and
   * 4: how the exec helper (src/container/exec-helper.ts) starts itself in a container.
   */
  execDetachedArgv(id: string, processFile: string, pidFile: string): string[] {
    return [this.path, ...this.globalArgs(), 'exec', '--detach', '--process', processFile, '--pid-file', pidFile, '--preserve-fds', '2', id];
  }

  /** `exec` arguments for a process spec file, for callers that manage the child themselves. */
  execArgs(id: string, processFile: string, pidFile: string, opts: { tty?: boolean } = {}): string[] {
    return [...this.globalArgs(), 'exec', '--process', processFile, '--pid-file', pidFile, ...(opts.tty ? ['--tty'] : []), id];
  }
}
