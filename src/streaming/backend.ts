// What the streaming server needs from the runtime: run a command in a container, join a
// container's stdio, and connect to a port in a pod's network namespace. The server owns the
// client protocols; a backend only moves bytes between these streams and the container.
import type { Duplex, Readable, Writable } from 'node:stream';

export interface TerminalSize {
  width: number;
  height: number;
}

/** The client's side of a session. Absent streams were not requested. */
export interface SessionIo {
  /**
   * Ends when the client closes stdin. Exec: close the process's stdin then. Attach: close the
   * container's stdin only if it was created with stdin_once, as other runtimes do.
   */
  stdin?: Readable;
  /** The backend writes output here and never ends these; the server ends them after the exit. */
  stdout?: Writable;
  stderr?: Writable;
  /** With a tty, stdout carries the terminal and stderr is absent. */
  tty: boolean;
  /** Terminal size changes to apply to the tty, in order; ends with the session. */
  resize?: AsyncIterable<TerminalSize>;
}

export interface StreamingBackend {
  /**
   * Checks a container exists and is running, for Exec and Attach; returns its full ID. Throws a
   * BerthError (not-found, failed-precondition) that the CRI call answers with.
   */
  resolveContainer(containerId: string): string;
  /** Checks a pod sandbox exists and is ready, for PortForward; returns its full ID. */
  resolveSandbox(podSandboxId: string): string;
  /**
   * Runs `cmd` in the container and resolves with its exit code once it has exited and its
   * output is written. The process starts at once, with a terminal when `want.tty` and a stdin
   * when `want.stdin`, while the client still opens its streams: `io` settles when they are open
   * (output waits in the process's pipes until then) and rejects when the client left first.
   * `signal` fires when the client goes away: kill the process then.
   */
  exec(containerId: string, cmd: string[], want: { tty: boolean; stdin: boolean }, io: Promise<SessionIo>, signal: AbortSignal): Promise<{ exitCode: number }>;
  /**
   * Joins the container's main process stdio; resolves when the container exits or `signal`
   * fires (the client detached). Detaching never stops the container.
   */
  attach(containerId: string, io: SessionIo, signal: AbortSignal): Promise<void>;
  /**
   * Connects `conn` to 127.0.0.1:`port` inside the sandbox's network namespace and relays until
   * either side closes. Rejects (with a message for the client) when the port refuses.
   */
  portForward(podSandboxId: string, port: number, conn: Duplex, signal: AbortSignal): Promise<void>;
}
