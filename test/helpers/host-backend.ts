// A StreamingBackend over real host processes, for protocol tests of the streaming server before
// containers exist: exec spawns the command on the host (under util-linux `script` for a tty, so
// there is a real pty), attach joins long-running processes the test starts, and port-forward
// dials 127.0.0.1 on the host. Real processes and sockets, no imitation of berth's own code.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, readlink } from 'node:fs/promises';
import { connect } from 'node:net';
import type { Duplex, Readable, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SessionIo, StreamingBackend, TerminalSize } from '../../src/streaming/backend.ts';
import { failedPrecondition, notFound } from '../../src/util/errors.ts';

function shellQuote(argv: string[]): string {
  return argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
}

/** The pty slave of `script`'s child, once it has one. */
async function ptyOf(scriptPid: number, deadline: number): Promise<string> {
  while (Date.now() < deadline) {
    const children = (await readFile(`/proc/${scriptPid}/task/${scriptPid}/children`, 'utf8').catch(() => '')).trim().split(/\s+/).filter(Boolean);
    for (const child of children) {
      const target = await readlink(`/proc/${child}/fd/0`).catch(() => '');
      if (target.startsWith('/dev/pts/')) return target;
    }
    await sleep(10);
  }
  throw new Error('the pty did not appear');
}

/** Applies window sizes to the pty with stty, which makes the kernel send SIGWINCH. */
async function applyResizes(proc: ChildProcess, sizes: AsyncIterable<TerminalSize>): Promise<void> {
  let pty: string | undefined;
  for await (const size of sizes) {
    if (proc.exitCode !== null || proc.pid === undefined) return;
    pty ??= await ptyOf(proc.pid, Date.now() + 5000);
    await new Promise<void>((resolve) => {
      const stty = spawn('stty', ['-F', pty as string, 'rows', String(size.height), 'cols', String(size.width)], { stdio: 'ignore' });
      stty.once('close', () => resolve());
      stty.once('error', () => resolve());
    });
  }
}

function spawnWithPty(argv: string[], tty: boolean): ChildProcess {
  if (!tty) return spawn(argv[0] as string, argv.slice(1), { stdio: 'pipe' });
  return spawn('script', ['-qefc', shellQuote(argv), '/dev/null'], { stdio: 'pipe' });
}

function pipeOut(from: Readable | null, to: Writable | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (!from) return resolve();
    if (to) from.pipe(to, { end: false });
    else from.resume();
    from.once('close', () => resolve());
    from.once('end', () => resolve());
  });
}

export class HostBackend implements StreamingBackend {
  /** "Containers" for attach: long-running processes by ID. */
  private readonly containers = new Map<string, { proc: ChildProcess; tty: boolean }>();
  /** PIDs of every exec process started, so tests can check none outlives its session. */
  readonly execPids: number[] = [];

  /** Starts a long-running process that attach can join. */
  startContainer(id: string, argv: string[], tty = false): ChildProcess {
    const proc = spawnWithPty(argv, tty);
    this.containers.set(id, { proc, tty });
    proc.once('exit', () => this.containers.delete(id));
    return proc;
  }

  async stopAll(): Promise<void> {
    const waits = [...this.containers.values()].map(({ proc }) => new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    }));
    await Promise.all(waits);
  }

  resolveContainer(containerId: string): string {
    if (containerId.startsWith('missing')) throw notFound(`container ${containerId} not found`);
    if (containerId.startsWith('stopped')) throw failedPrecondition(`container ${containerId} is not running`);
    return containerId;
  }

  resolveSandbox(podSandboxId: string): string {
    if (podSandboxId.startsWith('missing')) throw notFound(`pod sandbox ${podSandboxId} not found`);
    return podSandboxId;
  }

  async exec(_containerId: string, cmd: string[], io: SessionIo, signal: AbortSignal): Promise<{ exitCode: number }> {
    const proc = spawnWithPty(cmd, io.tty);
    if (proc.pid !== undefined) this.execPids.push(proc.pid);
    const kill = (): void => {
      proc.kill('SIGKILL');
    };
    signal.addEventListener('abort', kill, { once: true });
    proc.stdin?.on('error', () => {});
    if (io.stdin && proc.stdin) io.stdin.pipe(proc.stdin);
    else proc.stdin?.end();
    const resizing = io.resize ? applyResizes(proc, io.resize).catch(() => {}) : Promise.resolve();
    try {
      const exited = new Promise<number>((resolve, reject) => {
        proc.once('error', reject);
        proc.once('exit', (code, sig) => resolve(code ?? (sig ? 128 : 1)));
      });
      const [code] = await Promise.all([exited, pipeOut(proc.stdout, io.stdout), pipeOut(proc.stderr, io.stderr)]);
      return { exitCode: code };
    } finally {
      signal.removeEventListener('abort', kill);
      io.stdin?.unpipe();
      void resizing;
    }
  }

  async attach(containerId: string, io: SessionIo, signal: AbortSignal): Promise<void> {
    const c = this.containers.get(containerId);
    if (!c) throw notFound(`container ${containerId} is not running`);
    const { proc } = c;
    if (io.stdin && proc.stdin) io.stdin.pipe(proc.stdin, { end: false });
    if (io.stdout) proc.stdout?.pipe(io.stdout, { end: false });
    if (io.stderr) proc.stderr?.pipe(io.stderr, { end: false });
    const resizing = io.resize ? applyResizes(proc, io.resize).catch(() => {}) : Promise.resolve();
    await new Promise<void>((resolve) => {
      const done = (): void => {
        proc.off('exit', done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      proc.once('exit', done);
      signal.addEventListener('abort', done, { once: true });
    });
    // Detach: stop relaying; the process keeps running.
    io.stdin?.unpipe(proc.stdin ?? undefined);
    if (io.stdout) proc.stdout?.unpipe(io.stdout);
    if (io.stderr) proc.stderr?.unpipe(io.stderr);
    void resizing;
  }

  async portForward(_podSandboxId: string, port: number, conn: Duplex, signal: AbortSignal): Promise<void> {
    const sock = connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    await new Promise<void>((resolve) => {
      const done = (): void => {
        sock.destroy();
        resolve();
      };
      conn.pipe(sock);
      sock.pipe(conn);
      sock.once('close', done);
      sock.on('error', done);
      conn.once('close', done);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
