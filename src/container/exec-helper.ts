// The per-container exec helper (native/exec-helper.c) from berthd's side. `runc exec` costs
// 25-40 ms from its start until the command runs; the helper is started in a container once,
// by the runtime's own `exec` (so it has exactly the confinement an exec gets), and then forks
// each later exec itself in ~1-3 ms. One unix socket per container under <state>/exec-helper/,
// one connection per exec, speaking the frames the C file describes. The helper runs with the
// container's privileges, so what it sends is untrusted: frames are parsed strictly and bounded,
// and a bad one fails that exec, nothing more.
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { access, constants, mkdir, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { basename, join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { getSystemErrorMessage } from 'node:util';
import type { Logger } from 'pino';
import type { OciRuntime } from '../oci/runtime.ts';
import type { OciSpec } from '../oci/types.ts';
import { runCommand } from '../util/run-command.ts';
import { BerthError, errnoCode, errorMessage } from '../util/errors.ts';

/**
 * The frames' version, in the helper's file names: a berthd of another version (an upgrade while
 * containers run) starts a helper of its own beside the old one instead of misreading it.
 */
const PROTOCOL = 1;
/** Frame types (native/exec-helper.c). */
const F = { HEADER: 1, STDIN: 2, STDIN_EOF: 3, RESIZE: 4, KILL: 5, STARTED: 16, FAILED: 17, STDOUT: 18, STDERR: 19, EXIT: 20, UNUSABLE: 21 } as const;
/** Largest frame either side sends after the header (the helper reads output 32 KiB at a time). */
const MAX_FRAME = 64 * 1024;
/** Largest header the helper accepts (the argv), and most arguments. */
const MAX_HEADER = 256 * 1024;
const MAX_ARGS = 4096;
/** How long starting a helper (one detached `runc exec`) may take. */
const LAUNCH_MS = 15_000;
/** How long a helper may take to start a command before the exec goes to the runtime instead. */
const START_MS = 10_000;
/** Name of the helper's memfd, as /proc/<pid>/exe shows it: how a pid file's pid is checked. */
const HELPER_EXE = '/memfd:berth-exec-helper';

/** Why the command could not be executed, worded as runc words it (scripts look for it). */
function execFailure(arg0: string, errno: number): string {
  const what = errno === 2 && !arg0.includes('/') ? 'executable file not found in $PATH' : errno > 0 && errno < 4096 ? getSystemErrorMessage(-errno) : `error ${errno}`;
  return `exec failed: unable to start container process: exec: ${JSON.stringify(arg0)}: ${what}\n`;
}

function frame(type: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(5);
  head[0] = type;
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/**
 * One command running through a helper. Output arrives on `stdout`/`stderr` (both end after the
 * exit; a tty's output is all on stdout); `stdin` takes input (ending it closes the command's
 * stdin; a terminal stays open). `exit` resolves with the exit code (128+signal when killed; 255
 * with runc's message on stderr when the command could not be executed) and rejects when the
 * helper breaks the protocol or goes away first. `started` settles first: resolved once the
 * command was started (or found not executable), rejected when the helper could not serve it.
 */
export class HelperExec {
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly stdin: Writable;
  readonly started: Promise<void>;
  readonly exit: Promise<number>;
  private readonly socket: Socket;
  private buf: Buffer = Buffer.alloc(0);
  private state: 'starting' | 'running' | 'done' = 'starting';

  constructor(socket: Socket, containerId: string, args: string[], opts: { tty: boolean; stdin: boolean }) {
    const tty = opts.tty;
    this.socket = socket;
    this.stdin = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        let ok = true;
        for (let off = 0; off < chunk.length; off += MAX_FRAME) ok = socket.write(frame(F.STDIN, chunk.subarray(off, off + MAX_FRAME)));
        if (ok || socket.destroyed) return cb();
        // Every wait has a way out: the socket closing ends it too.
        const done = (): void => {
          socket.off('drain', done);
          socket.off('close', done);
          cb();
        };
        socket.once('drain', done);
        socket.once('close', done);
      },
      final: (cb) => {
        if (!socket.destroyed) socket.write(frame(F.STDIN_EOF));
        cb();
      },
    });
    this.stdin.on('error', () => {});
    let started!: { resolve: () => void; reject: (e: Error) => void };
    this.started = new Promise<void>((resolve, reject) => (started = { resolve, reject }));
    this.started.catch(() => {});
    this.exit = new Promise<number>((resolve, reject) => {
      const fail = (why: string): void => {
        if (this.state === 'done') return;
        this.state = 'done';
        socket.destroy();
        this.stdout.end();
        this.stderr.end();
        const err = new BerthError('unavailable', `exec in container ${containerId}: ${why}`);
        started.reject(err);
        reject(err);
      };
      const finish = (code: number): void => {
        started.resolve();
        this.state = 'done';
        this.stdout.end();
        this.stderr.end();
        socket.end();
        resolve(code);
      };
      // A full client stream pauses the connection; the helper then stops reading the command.
      const resume = (): void => {
        if (!this.stdout.writableNeedDrain && !this.stderr.writableNeedDrain) socket.resume();
      };
      this.stdout.on('drain', resume);
      this.stderr.on('drain', resume);
      socket.on('data', (chunk: Buffer) => {
        this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
        while (this.buf.length >= 5 && this.state !== 'done') {
          const type = this.buf[0];
          const len = this.buf.readUInt32BE(1);
          if (len > MAX_FRAME) return fail(`the exec helper sent a frame of ${len} bytes (at most ${MAX_FRAME}); it may have been tampered with from inside the container`);
          if (this.buf.length < 5 + len) break;
          const data = this.buf.subarray(5, 5 + len);
          this.buf = this.buf.subarray(5 + len);
          const u32 = len === 4 ? data.readUInt32BE(0) : -1;
          if (this.state === 'starting' && type === F.STARTED && len === 4) {
            this.state = 'running';
            started.resolve();
          } else if (this.state === 'starting' && type === F.UNUSABLE && len === 4) {
            return fail(`the exec helper cannot start processes here: ${u32 > 0 && u32 < 4096 ? getSystemErrorMessage(-u32) : `error ${u32}`}`);
          } else if (this.state === 'starting' && type === F.FAILED && len === 4) {
            (tty ? this.stdout : this.stderr).write(execFailure(args[0] ?? '', u32));
            return finish(255);
          } else if (this.state === 'running' && (type === F.STDOUT || type === F.STDERR) && len > 0) {
            const to = type === F.STDOUT ? this.stdout : this.stderr;
            if (!to.write(data)) socket.pause();
          } else if (this.state === 'running' && type === F.EXIT && u32 >= 0 && u32 <= 255) return finish(u32);
          else return fail(`the exec helper sent an unexpected frame (type ${type}, ${len} bytes); it may have been tampered with from inside the container`);
        }
      });
      socket.on('error', (err) => fail(`the exec helper's connection failed: ${err.message}`));
      socket.on('close', () => fail('the exec helper went away before the command exited (was it killed from inside the container?)'));
    });
    this.exit.catch(() => {});
    const argv = Buffer.concat(args.map((a) => Buffer.from(`${a}\0`)));
    const head = Buffer.alloc(5);
    head[0] = (tty ? 1 : 0) | (opts.stdin ? 2 : 0);
    socket.write(frame(F.HEADER, Buffer.concat([head, argv])));
  }

  /** Sets the terminal's size (the command gets SIGWINCH). */
  resize(size: { width: number; height: number }): void {
    const b = Buffer.alloc(4);
    b.writeUInt16BE(Math.min(size.height, 0xffff), 0);
    b.writeUInt16BE(Math.min(size.width, 0xffff), 2);
    if (!this.socket.destroyed) this.socket.write(frame(F.RESIZE, b));
  }

  /** SIGKILLs the command; `exit` then resolves with 137. */
  kill(): void {
    if (!this.socket.destroyed) this.socket.write(frame(F.KILL));
  }

  /** Drops the connection: the helper kills the command. */
  destroy(): void {
    this.socket.destroy();
  }
}

/** What starting a container's helper needs: its runtime, the process spec execs use, its bundle. */
export interface HelperLaunch {
  runtime: OciRuntime;
  process: NonNullable<OciSpec['process']>;
  bundle: string;
}

export class ExecHelpers {
  private binary: string;
  private readonly dir: string;
  private readonly log: Logger;
  /** The socket directory, open: sockets are dialled as /proc/self/fd/<fd>/<id>.sock, which fits a socket address whatever the state dir's length. */
  private dirFd: number | undefined;
  /** Helper starts in flight, one per container. */
  private readonly launching = new Map<string, Promise<void>>();
  /** Containers whose helper could not start: they use the runtime's exec (logged once each). */
  private readonly unavailable = new Set<string>();

  constructor(binary: string, state: string, log: Logger) {
    this.binary = binary;
    this.dir = join(state, 'exec-helper');
    this.log = log;
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    this.dirFd = openSync(this.dir, 'r');
    if (!this.binary) return;
    try {
      await access(this.binary, constants.X_OK);
    } catch {
      this.log.warn({ execHelper: this.binary }, 'exec helper binary not found (build it with hack/build-native.sh); every exec runs the runtime\'s exec');
      this.binary = '';
    }
  }

  close(): void {
    if (this.dirFd !== undefined) closeSync(this.dirFd);
    this.dirFd = undefined;
  }

  private path(id: string, ext: 'sock' | 'pid'): string {
    return join(this.dir, `${id}.p${PROTOCOL}.${ext}`);
  }

  /**
   * Starts `args` in the container through its helper, starting the helper first when it is not
   * running (the first exec pays for that). Undefined when the container cannot have a helper:
   * the caller then runs the runtime's exec.
   */
  async open(id: string, args: string[], opts: { tty: boolean; stdin: boolean }, launch: () => HelperLaunch, signal: AbortSignal): Promise<HelperExec | undefined> {
    if (!this.binary || this.dirFd === undefined || this.unavailable.has(id)) return undefined;
    // Argv the frames cannot carry goes to the runtime, which answers it as it always did.
    if (args.length > MAX_ARGS || Buffer.byteLength(args.join('\0')) + args.length + 5 > MAX_HEADER || args.some((a) => a.includes('\0'))) return undefined;
    await this.launching.get(id)?.catch(() => undefined);
    let socket = await this.dial(id).catch((err: unknown) => err as Error);
    if (socket instanceof Error) {
      if (!['ENOENT', 'ECONNREFUSED'].includes(errnoCode(socket) ?? '')) return this.giveUp(id, `cannot connect to its exec helper: ${socket.message}`);
      let starting = this.launching.get(id);
      if (!starting) {
        starting = this.launch(id, launch()).finally(() => this.launching.delete(id));
        this.launching.set(id, starting);
      }
      try {
        await starting;
        socket = await this.dial(id);
      } catch (err) {
        return this.giveUp(id, errorMessage(err));
      }
    }
    const h = new HelperExec(socket, id, args, opts);
    // Until the command runs, a failure is the helper's (a seccomp profile that forbids what it
    // needs, a helper stopped from inside): this exec and later ones go to the runtime.
    const deadline = setTimeout(() => h.destroy(), START_MS);
    const abort = (): void => h.destroy();
    signal.addEventListener('abort', abort, { once: true });
    try {
      await h.started;
    } catch (err) {
      if (signal.aborted) throw new BerthError('cancelled', `exec in container ${id}: cancelled by the client`);
      return this.giveUp(id, errorMessage(err));
    } finally {
      clearTimeout(deadline);
      signal.removeEventListener('abort', abort);
    }
    return h;
  }

  private giveUp(id: string, why: string): undefined {
    if (!this.unavailable.has(id)) this.log.warn({ container: id, err: why }, 'exec helper unavailable for this container; its execs run the runtime\'s exec');
    this.unavailable.add(id);
    return undefined;
  }

  private dial(id: string): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const s = connect(join('/proc/self/fd', String(this.dirFd), basename(this.path(id, 'sock'))));
      s.once('connect', () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    });
  }

  private async launch(id: string, l: HelperLaunch): Promise<void> {
    const processFile = join(l.bundle, 'exec-helper.json');
    // runc runs the sealed copy the launcher put on fd 3; fd 4 is the listening socket.
    writeFileSync(processFile, JSON.stringify({ ...l.process, args: ['/proc/self/fd/3', 'serve'], terminal: false }));
    try {
      const argv = l.runtime.execDetachedArgv(id, processFile, this.path(id, 'pid'));
      const started = performance.now();
      await runCommand(this.binary, ['launch', this.path(id, 'sock'), '--', ...argv], { step: `start the exec helper in container ${id}`, timeoutMs: LAUNCH_MS });
      this.log.debug({ container: id, ms: Math.round(performance.now() - started) }, 'exec helper started');
    } finally {
      await rm(processFile, { force: true });
    }
  }

  /** Ends a container's helpers (it exited or goes away; any protocol version) and removes their sockets and pid files. */
  async forget(id: string): Promise<void> {
    this.unavailable.delete(id);
    // A start still in flight needs no wait: the runtime refuses to exec into a stopped container.
    const files = (await readdir(this.dir).catch(() => [] as string[])).filter((f) => f.startsWith(`${id}.`));
    for (const f of files.filter((f) => f.endsWith('.pid'))) {
      const pid = Number((await readFile(join(this.dir, f), 'utf8').catch(() => '')).trim());
      // PIDs get reused: only a process running the helper's memfd is killed.
      if (Number.isInteger(pid) && pid > 0 && (await readlink(`/proc/${pid}/exe`).catch(() => '')).startsWith(HELPER_EXE)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
    }
    for (const f of files) await rm(join(this.dir, f), { force: true });
  }

  /** Forgets the helpers of containers that are no longer running (exited or removed while berthd was down). */
  async sweep(running: (id: string) => boolean): Promise<void> {
    const ids = new Set<string>();
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      const m = /^([a-f0-9]{64})\./.exec(name);
      if (m?.[1] && !running(m[1])) ids.add(m[1]);
    }
    for (const id of ids) await this.forget(id);
  }
}
