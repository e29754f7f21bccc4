// Pseudo-terminals for tty sessions. Node cannot open one (no grantpt/unlockpt/ioctl), so util-linux
// `script` makes it: its child is a placeholder that only holds the terminal, berthd opens the
// terminal's slave end and hands it as stdin/stdout/stderr to the real process (`runc exec
// --tty`, which mirrors it into the container's own pty), and `script` relays the master end
// to pipes berthd reads and writes. Resizing sets the size with stty and tells the process
// (SIGWINCH), as a terminal emulator would.
import { spawn, type ChildProcess } from 'node:child_process';
import { constants, open, readFile, readlink, type FileHandle } from 'node:fs/promises';
import { Transform, type Readable, type TransformCallback, type Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TerminalSize } from './backend.ts';
import { BerthError } from '../util/errors.ts';

/** How long `script` may take to set the terminal up. */
const OPEN_TIMEOUT_MS = 5000;

/** A terminal's ONLCR done in berthd: a \n not already preceded by \r becomes \r\n. */
class NewlineToCrlf extends Transform {
  private lastWasCr = false;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const parts: Buffer[] = [];
    let from = 0;
    for (let i = chunk.indexOf(0x0a); i !== -1; i = chunk.indexOf(0x0a, i + 1)) {
      const before = i > 0 ? chunk[i - 1] === 0x0d : this.lastWasCr;
      if (before) continue;
      parts.push(chunk.subarray(from, i), CR);
      from = i;
    }
    parts.push(chunk.subarray(from));
    if (chunk.length > 0) this.lastWasCr = chunk[chunk.length - 1] === 0x0d;
    cb(null, parts.length === 1 ? chunk : Buffer.concat(parts));
  }
}

const CR = Buffer.from([0x0d]);

/** Runs `stty -F path …`; false when it fails or takes longer than the open deadline. */
function stty(path: string, settings: string[]): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn('stty', ['-F', path, ...settings], { stdio: 'ignore' });
    const timer = setTimeout(() => child.kill('SIGKILL'), OPEN_TIMEOUT_MS);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve(code === 0);
    });
    child.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

export class Pty {
  /** Bytes typed into the terminal (to the process). */
  readonly input: Writable;
  /** What the process writes to the terminal; ends after close() once everything is relayed. */
  readonly output: Readable;
  /** The slave end, for the process's stdio; close it in berthd once the process has it. */
  readonly slave: FileHandle;
  readonly path: string;
  private readonly script: ChildProcess;
  private readonly holderPid: number;

  private constructor(script: ChildProcess, holderPid: number, path: string, slave: FileHandle, mirror: boolean) {
    this.script = script;
    this.holderPid = holderPid;
    this.path = path;
    this.slave = slave;
    this.input = script.stdin as Writable;
    this.output = mirror ? (script.stdout as Readable).pipe(new NewlineToCrlf()) : (script.stdout as Readable);
    this.input.on('error', () => {});
  }

  /**
   * `mirror`: the terminal only mirrors another one, as for `runc exec --tty`. runc clears ONLCR
   * on the container's pty once it holds it and leaves the newline translation to this terminal,
   * so output written before that moment arrives translated and output after it does not (a
   * real race: `echo hello` came out as "hello\r\r\n" about one time in four). This terminal
   * therefore translates nothing, and berthd does the translation itself, turning only a bare
   * \n into \r\n: the client gets exactly one \r\n either way.
   */
  static async open(signal: AbortSignal, opts: { mirror?: boolean } = {}): Promise<Pty> {
    // The placeholder reads nothing and writes nothing: it only keeps the terminal alive.
    const script = spawn('script', ['-qfc', 'exec sleep 2147483647', '/dev/null'], { stdio: ['pipe', 'pipe', 'ignore'] });
    const fail = (why: string): never => {
      script.kill('SIGKILL');
      throw new BerthError('unavailable', `could not make a terminal for the session (util-linux script): ${why}`);
    };
    const exited = new Promise<void>((resolve) => script.once('exit', () => resolve()));
    script.once('error', () => {});
    const deadline = Date.now() + OPEN_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (signal.aborted) fail('the client went away');
      if (script.exitCode !== null || script.signalCode !== null || script.pid === undefined) fail('script exited');
      const pid = script.pid as number;
      const children = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')).trim().split(/\s+/).filter(Boolean);
      for (const child of children) {
        const path = await readlink(`/proc/${child}/fd/0`).catch(() => '');
        if (!path.startsWith('/dev/pts/')) continue;
        if (opts.mirror && !(await stty(path, ['raw', '-echo', '-onlcr']))) fail(`stty could not set up ${path}`);
        // O_NOCTTY: berthd must never acquire the session's terminal.
        const slave = await open(path, constants.O_RDWR | constants.O_NOCTTY);
        return new Pty(script, Number(child), path, slave, opts.mirror === true);
      }
      await Promise.race([sleep(5), exited]);
    }
    return fail(`no terminal within ${OPEN_TIMEOUT_MS} ms`);
  }

  /** Sets the window size and signals `proc` (the process that mirrors or reads the terminal). */
  async resize(size: TerminalSize, proc: ChildProcess | undefined): Promise<void> {
    await stty(this.path, ['rows', String(size.height), 'cols', String(size.width)]);
    if (proc && proc.exitCode === null) proc.kill('SIGWINCH');
  }

  /** Ends the session: the terminal closes, `output` ends after the last relayed byte. */
  async close(): Promise<void> {
    await this.slave.close().catch(() => {});
    try {
      process.kill(this.holderPid, 'SIGKILL');
    } catch {
      // already gone
    }
    if (this.script.exitCode === null && this.script.signalCode === null) {
      const gone = new Promise<void>((resolve) => this.script.once('exit', () => resolve()));
      const timer = setTimeout(() => this.script.kill('SIGKILL'), OPEN_TIMEOUT_MS);
      await gone;
      clearTimeout(timer);
    }
  }
}
