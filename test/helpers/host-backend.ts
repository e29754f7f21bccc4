// A StreamingBackend over real host processes, for protocol tests of the streaming server without
// containers: exec spawns the command on the host (on a real terminal from src/streaming/pty.ts
// for a tty, as the runtime backend does for runc), attach joins long-running processes the test
// starts, and port-forward dials 127.0.0.1 on the host.
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import type { Duplex, Readable, Writable } from 'node:stream';
import type { SessionIo, StreamingBackend } from '../../src/streaming/backend.ts';
import { Pty } from '../../src/streaming/pty.ts';
import { failedPrecondition, notFound } from '../../src/util/errors.ts';

function spawnWithPty(argv: string[], tty: boolean): ChildProcess {
  if (!tty) return spawn(argv[0] as string, argv.slice(1), { stdio: 'pipe' });
  return spawn('script', ['-qefc', argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' '), '/dev/null'], { stdio: 'pipe' });
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

  async exec(_containerId: string, cmd: string[], _want: { tty: boolean; stdin: boolean }, session: Promise<SessionIo>, signal: AbortSignal): Promise<{ exitCode: number }> {
    const io = await session;
    const pty = io.tty ? await Pty.open(signal) : undefined;
    const fd = pty?.slave.fd;
    const proc = spawn(cmd[0] as string, cmd.slice(1), { stdio: fd !== undefined ? [fd, fd, fd] : 'pipe' });
    const exited = new Promise<number>((resolve, reject) => {
      proc.once('error', reject);
      proc.once('exit', (code, sig) => resolve(code ?? (sig ? 128 : 1)));
    });
    if (proc.pid !== undefined) this.execPids.push(proc.pid);
    await pty?.slave.close();
    const kill = (): void => {
      proc.kill('SIGKILL');
    };
    signal.addEventListener('abort', kill, { once: true });
    const input = pty ? pty.input : proc.stdin;
    input?.on('error', () => {});
    if (io.stdin && input) io.stdin.pipe(input);
    else if (!pty) input?.end();
    const resizing = (async (): Promise<void> => {
      if (!pty || !io.resize) return;
      for await (const size of io.resize) await pty.resize(size, proc);
    })();
    try {
      const output = pty ? pipeOut(pty.output, io.stdout) : Promise.all([pipeOut(proc.stdout, io.stdout), pipeOut(proc.stderr, io.stderr)]);
      const code = await exited;
      await pty?.close();
      await output;
      return { exitCode: code };
    } finally {
      signal.removeEventListener('abort', kill);
      io.stdin?.unpipe();
      await pty?.close();
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
