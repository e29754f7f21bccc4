// Connections to a port inside a pod's network namespace, for port-forward, with no tool in the
// image. Node cannot setns(2), so one small helper per namespace (netns-connector.ts, run by
// util-linux nsenter) connects there and passes each connected socket back over Node's IPC
// channel. Bytes then flow on that socket in berthd itself: no relay process per connection.
// A helper lives while it is used and exits after a short idle time.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { BerthError, unavailable } from '../util/errors.ts';

const CONNECTOR = fileURLToPath(new URL('./netns-connector.ts', import.meta.url));
/** A helper with no dial for this long exits; the next dial starts another. */
const HELPER_IDLE_MS = 30_000;
/** A dial (helper start included) that takes longer fails. */
const DIAL_TIMEOUT_MS = 10_000;

type Reply = { id: number; error?: string };

class Helper {
  readonly child: ChildProcess;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (s: Socket) => void; reject: (e: Error) => void }>();
  private idle: NodeJS.Timeout | undefined;
  private exitError: Error | undefined;

  private readonly netnsPath: string;

  constructor(netnsPath: string, onExit: () => void) {
    this.netnsPath = netnsPath;
    this.child = spawn('nsenter', [`--net=${netnsPath}`, '--', process.execPath, CONNECTOR], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      serialization: 'json',
    });
    let stderr = '';
    this.child.stderr?.on('data', (c: Buffer) => {
      if (stderr.length < 4096) stderr += c.toString();
    });
    this.child.on('message', (m: Reply, socket?: Socket) => {
      const waiter = this.pending.get(m.id);
      if (!waiter) {
        // The dial was given up (timeout, client gone) before the answer came.
        socket?.destroy();
        return;
      }
      if (socket && !m.error) waiter.resolve(socket);
      else waiter.reject(new BerthError('unavailable', m.error ?? 'the namespace helper answered without a socket'));
    });
    const fail = (why: string): void => {
      this.exitError ??= unavailable(`port-forward helper for ${netnsPath} ${why}${stderr ? `: ${stderr.trim()}` : ''}`);
      for (const w of [...this.pending.values()]) w.reject(this.exitError);
      clearTimeout(this.idle);
      onExit();
    };
    this.child.once('error', (err) => fail(`could not start (nsenter: ${err.message})`));
    this.child.once('exit', (code, sig) => fail(`exited (${sig ?? code})`));
  }

  dial(port: number, signal: AbortSignal): Promise<Socket> {
    if (this.exitError) return Promise.reject(this.exitError);
    clearTimeout(this.idle);
    const id = this.nextId++;
    return new Promise<Socket>((resolve, reject) => {
      const timer = setTimeout(() => settle(unavailable(`connecting to port ${port} in the pod took longer than ${DIAL_TIMEOUT_MS} ms`)), DIAL_TIMEOUT_MS);
      const onAbort = (): void => settle(new BerthError('cancelled', 'the client went away'));
      const settle = (err: Error | undefined, socket?: Socket): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        if (!this.pending.delete(id)) {
          socket?.destroy();
          return;
        }
        if (err) reject(err);
        else resolve(socket as Socket);
        this.armIdle();
      };
      this.pending.set(id, { resolve: (s) => settle(undefined, s), reject: (e) => settle(e) });
      signal.addEventListener('abort', onAbort, { once: true });
      // A helper that died before its exit was noticed refuses the message instead.
      this.child.send({ id, port }, (err) => {
        if (err) settle(this.exitError ?? unavailable(`port-forward helper for ${this.netnsPath} exited before it could dial (${err.message})`));
      });
    });
  }

  private armIdle(): void {
    if (this.pending.size > 0) return;
    clearTimeout(this.idle);
    this.idle = setTimeout(() => this.stop(), HELPER_IDLE_MS);
    this.idle.unref();
  }

  stop(): void {
    if (this.child.connected) this.child.disconnect();
    this.child.kill('SIGTERM');
  }
}

/** Dials ports inside network namespaces, one helper process per namespace in use. */
export class NetnsDialer {
  private readonly helpers = new Map<string, Helper>();

  /** A TCP connection to 127.0.0.1:`port` inside the network namespace pinned at `netnsPath`. */
  dial(netnsPath: string, port: number, signal: AbortSignal): Promise<Socket> {
    let helper = this.helpers.get(netnsPath);
    if (!helper) {
      const h: Helper = new Helper(netnsPath, () => {
        if (this.helpers.get(netnsPath) === h) this.helpers.delete(netnsPath);
      });
      this.helpers.set(netnsPath, h);
      helper = h;
    }
    return helper.dial(port, signal);
  }

  /** Stops every helper (daemon shutdown, or a sandbox going away). */
  close(netnsPath?: string): void {
    for (const [path, h] of this.helpers) {
      if (netnsPath !== undefined && path !== netnsPath) continue;
      h.stop();
      this.helpers.delete(path);
    }
  }
}
