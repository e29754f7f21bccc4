// Starts commands without forking berthd on the hot path. Forking copies the parent's page tables,
// so a spawn from berthd (100+ MiB) blocks its event loop for milliseconds; a small shell forked
// ahead of time instead waits for its command line and replaces itself with the command (exec),
// keeping the stdin/stdout/stderr pipes berthd already holds. One shell is kept ready; the next
// is forked while the command it became runs (the first command of all forks berthd itself).
import { spawn, type ChildProcess } from 'node:child_process';
import type { Writable } from 'node:stream';

/**
 * Reads one argument per line from fd 3 until an empty line, then becomes that command with fd
 * 3 closed. When berthd goes away first, fd 3 ends and the shell exits.
 */
const WAITER = 'set --; while IFS= read -r a <&3; do [ -n "$a" ] || exec "$@" 3<&-; set -- "$@" "$a"; done; exit 1';

export class WarmSpawner {
  private ready: ChildProcess | undefined;
  private closed = false;

  /**
   * Like spawn(path, args) with stdio pipes: the same ChildProcess semantics (pid, exit code,
   * kill). `path` must be absolute; an argument that is empty or holds a newline cannot travel
   * the line protocol and goes through a plain spawn.
   */
  spawn(path: string, args: string[]): ChildProcess {
    const argv = [path, ...args];
    const waiter = this.take();
    if (!waiter || argv.some((a) => a === '' || a.includes('\n'))) {
      waiter?.kill('SIGKILL');
      return spawn(path, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    }
    (waiter.stdio[3] as Writable).end(`${argv.join('\n')}\n\n`);
    this.refill();
    return waiter;
  }

  /** Ends the waiting shell (daemon shutdown). */
  close(): void {
    this.closed = true;
    this.ready?.kill('SIGKILL');
    this.ready = undefined;
  }

  private take(): ChildProcess | undefined {
    const waiter = this.ready;
    this.ready = undefined;
    if (waiter?.pid !== undefined && waiter.exitCode === null && waiter.signalCode === null) return waiter;
    if (!this.closed) this.refill();
    return undefined;
  }

  private refill(): void {
    if (this.closed || this.ready) return;
    const waiter = spawn('/bin/sh', ['-c', WAITER], { stdio: ['pipe', 'pipe', 'pipe', 'pipe'] });
    // A waiter that cannot start or dies while waiting is simply not used (take() checks).
    waiter.once('error', () => {});
    (waiter.stdio[3] as Writable).on('error', () => {});
    this.ready = waiter;
  }
}
