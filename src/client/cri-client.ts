// berth's own CRI client: promise-returning calls over the daemon's unix socket. Tests use it, and
// so will the `berth` CLI, so it speaks exactly what a kubelet speaks.
import { credentials, Metadata, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadBerthNode, loadBerthPeers, loadBerthPins, loadCri } from '../cri/proto.ts';

type Callback = (err: ServiceError | null, res: unknown) => void;
type UnaryMethod = (req: unknown, md: Metadata, opts: { deadline: number }, cb: Callback) => { cancel(): void };

export interface CallOptions {
  /** Milliseconds before the call fails with DEADLINE_EXCEEDED. */
  timeoutMs?: number;
  /** Cancels the call (the server sees CANCELLED), as a kubelet does when it gives up. */
  signal?: AbortSignal;
}

/** CRI's two services, and berth's own `berth.v1.Pins`, `berth.v1.Node` and `berth.v1.Peers` on the same socket. */
export type ServiceName = 'runtime' | 'image' | 'pins' | 'node' | 'peers';

export class CriClient {
  readonly runtime: Client;
  readonly image: Client;
  readonly pins: Client;
  readonly node: Client;
  readonly peers: Client;

  constructor(socketPath: string) {
    const { RuntimeService, ImageService } = loadCri();
    const target = `unix://${socketPath}`;
    this.runtime = new RuntimeService(target, credentials.createInsecure());
    this.image = new ImageService(target, credentials.createInsecure());
    this.pins = new (loadBerthPins())(target, credentials.createInsecure());
    this.node = new (loadBerthNode())(target, credentials.createInsecure());
    this.peers = new (loadBerthPeers())(target, credentials.createInsecure());
  }

  /** Calls a unary RPC by its proto name, e.g. `call('image', 'PullImage', {...})`. */
  call<Res = Record<string, unknown>>(service: ServiceName, method: string, req: object, opts: CallOptions = {}): Promise<Res> {
    const client = this[service];
    const fn = (client as unknown as Record<string, UnaryMethod | undefined>)[method];
    if (typeof fn !== 'function') return Promise.reject(new Error(`no RPC ${method} on the ${service} service`));
    return new Promise((resolve, reject) => {
      const { signal } = opts;
      const cancel = (): void => call.cancel();
      const call = fn.call(client, req, new Metadata(), { deadline: Date.now() + (opts.timeoutMs ?? 120_000) }, (err, res) => {
        signal?.removeEventListener('abort', cancel);
        if (err) reject(err);
        else resolve(res as Res);
      });
      signal?.addEventListener('abort', cancel, { once: true });
      if (signal?.aborted) cancel();
    });
  }

  /** Starts a server-streaming RPC and hands back the call: read it, or cancel it. */
  open(service: ServiceName, method: string, req: object): NodeJS.ReadableStream & { cancel(): void } {
    const client = this[service];
    const fn = (client as unknown as Record<string, ((req: unknown) => NodeJS.ReadableStream & { cancel(): void }) | undefined>)[method];
    if (typeof fn !== 'function') throw new Error(`no RPC ${method} on the ${service} service`);
    return fn.call(client, req);
  }

  /** Collects every message of a server-streaming RPC. */
  stream<Res = Record<string, unknown>>(service: ServiceName, method: string, req: object): Promise<Res[]> {
    let call: NodeJS.ReadableStream;
    try {
      call = this.open(service, method, req);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return new Promise((resolve, reject) => {
      const out: Res[] = [];
      call.on('data', (msg: Res) => out.push(msg));
      call.on('error', reject);
      call.on('end', () => resolve(out));
    });
  }

  close(): void {
    this.runtime.close();
    this.image.close();
    this.pins.close();
    this.node.close();
    this.peers.close();
  }
}
