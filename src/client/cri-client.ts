// berth's own CRI client: promise-returning calls over the daemon's unix socket. Tests use it, and
// so will the `berth` CLI, so it speaks exactly what a kubelet speaks.
import { credentials, Metadata, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadBerthPins, loadCri } from '../cri/proto.ts';

type Callback = (err: ServiceError | null, res: unknown) => void;
type UnaryMethod = (req: unknown, md: Metadata, opts: { deadline: number }, cb: Callback) => void;

export interface CallOptions {
  /** Milliseconds before the call fails with DEADLINE_EXCEEDED. */
  timeoutMs?: number;
}

/** CRI's two services, and berth's own `berth.v1.Pins` on the same socket. */
export type ServiceName = 'runtime' | 'image' | 'pins';

export class CriClient {
  readonly runtime: Client;
  readonly image: Client;
  readonly pins: Client;

  constructor(socketPath: string) {
    const { RuntimeService, ImageService } = loadCri();
    const target = `unix://${socketPath}`;
    this.runtime = new RuntimeService(target, credentials.createInsecure());
    this.image = new ImageService(target, credentials.createInsecure());
    this.pins = new (loadBerthPins())(target, credentials.createInsecure());
  }

  /** Calls a unary RPC by its proto name, e.g. `call('image', 'PullImage', {...})`. */
  call<Res = Record<string, unknown>>(service: ServiceName, method: string, req: object, opts: CallOptions = {}): Promise<Res> {
    const client = this[service];
    const fn = (client as unknown as Record<string, UnaryMethod | undefined>)[method];
    if (typeof fn !== 'function') return Promise.reject(new Error(`no RPC ${method} on the ${service} service`));
    return new Promise((resolve, reject) => {
      fn.call(client, req, new Metadata(), { deadline: Date.now() + (opts.timeoutMs ?? 120_000) }, (err, res) =>
        err ? reject(err) : resolve(res as Res),
      );
    });
  }

  /** Collects every message of a server-streaming RPC. */
  stream<Res = Record<string, unknown>>(service: ServiceName, method: string, req: object): Promise<Res[]> {
    const client = this[service];
    const fn = (client as unknown as Record<string, ((req: unknown) => NodeJS.ReadableStream) | undefined>)[method];
    if (typeof fn !== 'function') return Promise.reject(new Error(`no RPC ${method} on the ${service} service`));
    const call = fn.call(client, req);
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
  }
}
