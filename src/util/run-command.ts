// Runs one outside program (ip, unshare, mount, a CNI plugin) with a deadline and an AbortSignal,
// collecting its output; a failure names the step that failed so the caller's error says what broke.
import { spawn } from 'node:child_process';
import { BerthError, errorMessage } from './errors.ts';

export interface RunOptions {
  /** What this call does, for error messages: "create network namespace", "CNI plugin bridge ADD". */
  step: string;
  /**
   * Bytes written to stdin (then closed). A promise lets the program start before its input is
   * known: it waits on stdin meanwhile, and if the promise rejects it is killed and the call
   * rejects with that reason.
   */
  input?: string | Promise<string>;
  /** Full environment; the daemon's own when absent. */
  env?: NodeJS.ProcessEnv;
  /** Killed (SIGKILL) after this long. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Exit codes other than 0 that are not failures (the caller reads stdout to tell). */
  okCodes?: readonly number[];
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Output kept per stream; a tool that floods stdout is not worth more memory than this. */
const MAX_OUTPUT = 4 * 1024 * 1024;

/**
 * Spawns `cmd args`, resolves when it exits 0 (or with an `okCodes` code), rejects with a
 * BerthError naming `step` otherwise: 'unavailable' on a non-zero exit or a deadline, 'cancelled'
 * when `signal` fired, 'failed-precondition' when the program cannot be started at all.
 */
export function runCommand(cmd: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(new BerthError('cancelled', `${opts.step}: cancelled before it started`));
      return;
    }
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    let stdout = '';
    let stderr = '';
    let why: 'timeout' | 'cancelled' | 'input' | undefined;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      if (stdout.length < MAX_OUTPUT) stdout += d;
    });
    child.stderr.on('data', (d: string) => {
      if (stderr.length < MAX_OUTPUT) stderr += d;
    });
    child.stdin.on('error', () => {}); // EPIPE when the program exits without reading; its exit code tells
    let inputError: unknown;
    Promise.resolve(opts.input ?? '').then(
      (input) => child.stdin.end(input),
      (err: unknown) => {
        inputError = err;
        kill('input');
      },
    );

    const kill = (reason: 'timeout' | 'cancelled' | 'input'): void => {
      why ??= reason;
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => kill('timeout'), opts.timeoutMs);
    const onAbort = (): void => kill('cancelled');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const done = (): void => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    };

    child.once('error', (err) => {
      done();
      reject(new BerthError('failed-precondition', `${opts.step}: cannot run ${cmd}: ${errorMessage(err)}`, { cause: err }));
    });
    child.once('close', (code, sig) => {
      done();
      if (why === 'input') {
        reject(inputError);
      } else if (why === 'cancelled') {
        reject(new BerthError('cancelled', `${opts.step}: cancelled (${cmd} killed)`));
      } else if (why === 'timeout') {
        reject(new BerthError('unavailable', `${opts.step}: ${cmd} did not finish within ${opts.timeoutMs} ms and was killed`));
      } else if (code === 0 || (code !== null && opts.okCodes?.includes(code))) {
        resolve({ code, stdout, stderr });
      } else {
        const detail = (stderr.trim() || stdout.trim()).slice(0, 2000);
        const status = code === null ? `killed by ${sig}` : `exit ${code}`;
        reject(Object.assign(new BerthError('unavailable', `${opts.step}: ${cmd} failed (${status})${detail ? `: ${detail}` : ''}`), { stdout, stderr, code }));
      }
    });
  });
}
