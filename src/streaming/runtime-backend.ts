// The streaming backend over berth's runtime: exec through the container's exec helper, or the
// container service's `runc exec` where it has none (on a terminal from pty.ts for a tty), attach
// through conmon's attach socket (via the Perl relay in attach-relay.pl) and control FIFO, and
// port-forward through a connection dialled inside the pod's network namespace (netns-dial.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { constants, open, readFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { PassThrough, type Duplex, type Readable, type Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { BerthConfig } from '../config/config.ts';
import type { HelperExec } from '../container/exec-helper.ts';
import type { ContainerService } from '../container/service.ts';
import type { SandboxService } from '../sandbox/service.ts';
import type { SessionIo, StreamingBackend, TerminalSize } from './backend.ts';
import { NetnsDialer } from './netns-dial.ts';
import { Pty } from './pty.ts';
import { BerthError, errorMessage, failedPrecondition } from '../util/errors.ts';

const ATTACH_RELAY = fileURLToPath(new URL('./attach-relay.pl', import.meta.url));
/** How long a killed exec waits for runc to name the process it started. */
const PID_FILE_WAIT_MS = 5000;

/** Copies `from` into `to` without ending it; resolves when `from` is done. */
function relay(from: Readable | null | undefined, to: Writable | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (!from || from.readableEnded || from.destroyed) return resolve();
    if (to && !to.destroyed) {
      from.pipe(to, { end: false });
      // A client stream that goes away stops the pipe: drain the rest so `from` still ends.
      to.once('close', () => {
        from.unpipe(to);
        from.resume();
      });
    } else from.resume();
    from.once('end', () => resolve());
    from.once('close', () => resolve());
  });
}

/**
 * The exec'd process's host PID from runc's pid file, once runc has written it (0 if runc ends
 * or takes too long). runc writes it after the process starts, and after it has set up its own
 * signal handling.
 */
async function execPid(child: ChildProcess, pidFile: string): Promise<number> {
  const deadline = Date.now() + PID_FILE_WAIT_MS;
  while (child.exitCode === null && child.signalCode === null && Date.now() < deadline) {
    const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
    if (pid > 0) return pid;
    await sleep(10);
  }
  return 0;
}

function exitOf(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    if (child.signalCode !== null) return resolve(128 + 9);
    child.once('error', (err) => reject(new BerthError('unavailable', `exec in container: cannot run the runtime: ${err.message}`)));
    child.once('exit', (code, sig) => resolve(code ?? (sig ? 128 + 9 : 255)));
  });
}

export class RuntimeStreamingBackend implements StreamingBackend {
  private readonly containers: ContainerService;
  private readonly sandboxes: SandboxService;
  private readonly config: BerthConfig;
  private readonly log: Logger;
  private readonly dialer = new NetnsDialer();

  constructor(config: BerthConfig, containers: ContainerService, sandboxes: SandboxService, log: Logger) {
    this.config = config;
    this.containers = containers;
    this.sandboxes = sandboxes;
    this.log = log;
  }

  resolveContainer(containerId: string): string {
    const rec = this.containers.get(containerId);
    if (rec.state !== 'running') throw failedPrecondition(`container ${rec.id} is ${rec.state}; exec and attach need a running container`);
    return rec.id;
  }

  resolveSandbox(podSandboxId: string): string {
    const sb = this.sandboxes.get(podSandboxId);
    if (sb.state !== 'ready') throw failedPrecondition(`pod sandbox ${sb.id} is not ready; port-forward needs a running pod`);
    return sb.id;
  }

  async exec(containerId: string, cmd: string[], want: { tty: boolean; stdin: boolean }, session: Promise<SessionIo>, signal: AbortSignal): Promise<{ exitCode: number }> {
    const helped = await this.containers.helperExec(containerId, cmd, want, signal);
    if (helped) return this.execHelped(helped, want, session, signal);
    const pty = want.tty ? await Pty.open(signal, { mirror: true }) : undefined;
    try {
      const fd = pty?.slave.fd;
      const { child, pidFile, done } = await this.containers.spawnExec(containerId, cmd, {
        tty: want.tty,
        stdio: fd !== undefined ? [fd, fd, fd] : [want.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      });
      // runc has its own copy of the terminal now; berthd must not keep it open.
      await pty?.slave.close();
      const kill = (): void => void this.killExec(child, pidFile);
      if (signal.aborted) kill();
      signal.addEventListener('abort', kill, { once: true });
      let io: SessionIo | undefined;
      try {
        const input = pty ? pty.input : child.stdin;
        input?.on('error', () => {});
        // runc starts up while the client opens its streams; output waits meanwhile. Read from
        // the start: Node discards what an exited child wrote to a pipe nobody was reading.
        const [stdout, stderr] = [child.stdout?.pipe(new PassThrough()), child.stderr?.pipe(new PassThrough())];
        try {
          io = await session;
        } catch (err) {
          // The client left before its streams were open; `signal` has usually fired already.
          if (!signal.aborted) kill();
          await exitOf(child).catch(() => 0);
          throw err;
        }
        // A terminal stays open at stdin EOF (the client may just have nothing more to type).
        if (io.stdin && input) io.stdin.pipe(input, { end: !pty });
        if (pty && io.resize) this.applyResizes(io.resize, (size) => pty.resize(size, child));
        // A size set before runc listened for SIGWINCH is only in the outer terminal: once runc
        // has started the process (and so listens), have it copy the size again.
        if (pty) void execPid(child, pidFile).then((pid) => pid > 0 && child.exitCode === null && child.kill('SIGWINCH'));
        const output = pty ? relay(pty.output, io.stdout) : Promise.all([relay(stdout, io.stdout), relay(stderr, io.stderr)]);
        const exitCode = await exitOf(child);
        // The terminal closes once runc is gone; its output ends after the last byte.
        await pty?.close();
        await output;
        return { exitCode };
      } finally {
        signal.removeEventListener('abort', kill);
        io?.stdin?.unpipe();
        // The exec's temp files go while the outcome is reported: the client need not wait on them.
        void done().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'could not remove an exec temp file'));
      }
    } finally {
      await pty?.close();
    }
  }

  /**
   * Exec through the container's exec helper: it holds the terminal (inside the container) or the
   * pipes, and kills the command when the connection drops, which is what a client leaving does.
   */
  private async execHelped(h: HelperExec, want: { stdin: boolean }, session: Promise<SessionIo>, signal: AbortSignal): Promise<{ exitCode: number }> {
    const drop = (): void => h.destroy();
    if (signal.aborted) drop();
    signal.addEventListener('abort', drop, { once: true });
    let io: SessionIo | undefined;
    try {
      try {
        io = await session;
      } catch (err) {
        drop();
        throw err;
      }
      if (io.stdin && want.stdin) io.stdin.pipe(h.stdin);
      if (io.tty && io.resize) this.applyResizes(io.resize, async (size) => h.resize(size));
      const output = Promise.all([relay(h.stdout, io.stdout), relay(h.stderr, io.stderr)]);
      const exitCode = await h.exit;
      await output;
      return { exitCode };
    } finally {
      signal.removeEventListener('abort', drop);
      io?.stdin?.unpipe();
      h.destroy();
    }
  }

  /**
   * Killing `runc exec` alone would leave the process running in the container. runc writes the
   * pid file only after the process is running (it may already have printed), so wait for it
   * while runc lives.
   */
  private async killExec(child: ChildProcess, pidFile: string): Promise<void> {
    const pid = await execPid(child, pidFile);
    if (pid > 0) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    child.kill('SIGKILL');
  }

  /**
   * Applies the client's terminal sizes as they come, alongside the session; it ends with the
   * client's resize stream. Nobody waits for it, so it never fails: a failed resize is logged.
   */
  private applyResizes(sizes: AsyncIterable<TerminalSize>, apply: (s: TerminalSize) => Promise<void>): void {
    void (async () => {
      for await (const size of sizes) await apply(size);
    })().catch((err: unknown) => this.log.debug({ err: errorMessage(err) }, 'terminal resize failed'));
  }

  /** conmon keeps the attach socket and control FIFO in the bundle, linked from the socket dir. */
  private conmonDir(containerId: string): string {
    return join(this.config.state, 'attach', containerId);
  }

  async attach(containerId: string, io: SessionIo, signal: AbortSignal): Promise<void> {
    const id = this.resolveContainer(containerId);
    // Connected by a name relative to the relay's working directory: the full path passes the
    // 108 bytes a unix socket address holds once the state dir is ~35 characters long.
    const relayProc = spawn('perl', [ATTACH_RELAY, 'attach'], { cwd: this.conmonDir(id), stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    relayProc.stderr?.on('data', (c: Buffer) => {
      if (stderr.length < 4096) stderr += c.toString();
    });
    const stop = (): void => {
      relayProc.kill('SIGKILL');
    };
    signal.addEventListener('abort', stop, { once: true });
    try {
      relayProc.stdin?.on('error', () => {});
      // stdin EOF half-closes the socket; conmon then closes the container's stdin if stdin_once.
      if (io.stdin && relayProc.stdin) io.stdin.pipe(relayProc.stdin);
      if (io.tty && io.resize) this.applyResizes(io.resize, (size) => this.resizeConmon(id, size));
      const demux = this.demux(relayProc.stdout as Readable, io);
      const code = await exitOf(relayProc);
      await demux;
      if (code !== 0 && !signal.aborted) throw new BerthError('unavailable', `attach to container ${id} failed: ${stderr.trim() || `relay exited ${code}`}`);
    } finally {
      signal.removeEventListener('abort', stop);
      io.stdin?.unpipe();
    }
  }

  /** Splits the relay's frames (stream byte, 32-bit length, data) into stdout and stderr. */
  private demux(from: Readable, io: SessionIo): Promise<void> {
    let buf: Buffer = Buffer.alloc(0);
    from.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      while (buf.length >= 5) {
        const len = buf.readUInt32BE(1);
        if (buf.length < 5 + len) break;
        const data = buf.subarray(5, 5 + len);
        // conmon numbers its pipes 1 stdin, 2 stdout, 3 stderr; with a tty all is the terminal's.
        const to = buf[0] === 3 && !io.tty ? io.stderr : io.stdout;
        if (to && !to.destroyed && data.length > 0) to.write(data);
        buf = buf.subarray(5 + len);
      }
    });
    return relay(from, undefined);
  }

  /** conmon's control FIFO: "1 <height> <width>" resizes the container's terminal. */
  private async resizeConmon(containerId: string, size: TerminalSize): Promise<void> {
    const fh = await open(join(this.conmonDir(containerId), 'ctl'), constants.O_WRONLY | constants.O_NONBLOCK);
    try {
      await fh.write(`1 ${size.height} ${size.width}\n`);
    } finally {
      await fh.close();
    }
  }

  async portForward(podSandboxId: string, port: number, conn: Duplex, signal: AbortSignal): Promise<void> {
    const sb = this.sandboxes.get(podSandboxId);
    let socket: Socket;
    if (sb.netnsPath) socket = await this.dialer.dial(sb.netnsPath, port, signal);
    else {
      // A host-network pod: its ports are the host's.
      socket = connect({ host: '127.0.0.1', port });
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', (err: NodeJS.ErrnoException) => reject(new BerthError('unavailable', `connect ${err.code ?? err.message} 127.0.0.1:${port}`)));
      });
    }
    await new Promise<void>((resolve) => {
      const done = (): void => {
        socket.destroy();
        signal.removeEventListener('abort', done);
        resolve();
      };
      socket.on('error', done);
      socket.once('close', done);
      conn.once('close', done);
      signal.addEventListener('abort', done, { once: true });
      conn.pipe(socket);
      socket.pipe(conn);
    });
  }

  /** Stops the namespace helpers (daemon shutdown). */
  close(): void {
    this.dialer.close();
  }
}
