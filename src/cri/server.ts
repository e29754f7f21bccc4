// The gRPC server: registers every RPC of RuntimeService and ImageService on one unix socket.
// RPCs with a handler run it under a wrapper that maps thrown errors to statuses and logs; every
// other RPC answers UNIMPLEMENTED naming itself, so a kubelet gets a clear answer, never a hang.
import {
  Server,
  ServerCredentials,
  status as Status,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
  type UntypedServiceImplementation,
  type UntypedHandleCall,
  type ServiceDefinition,
} from '@grpc/grpc-js';
import { createServer, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { loadCri } from './proto.ts';
import { AuthorityRewriter } from './authority-rewriter.ts';
import { toStatus } from './errors.ts';
import { HANDLERS, type AnyHandler } from './handlers.ts';
import type { CriContext } from './rpc.ts';

function unimplemented(service: string, method: string, ctx: CriContext): UntypedHandleCall {
  const details = `${service}.${method} is not implemented by berth yet`;
  return ((call: ServerWritableStream<unknown, unknown>, callback?: sendUnaryData<unknown>) => {
    ctx.log.debug({ rpc: `${service}.${method}` }, 'unimplemented rpc called');
    if (callback) callback({ code: Status.UNIMPLEMENTED, details });
    else call.emit('error', { code: Status.UNIMPLEMENTED, details });
  }) as UntypedHandleCall;
}

function wrap(service: string, method: string, handler: AnyHandler, ctx: CriContext): UntypedHandleCall {
  const log = ctx.log.child({ rpc: `${service}.${method}` });
  const failed = (err: unknown, started: number): ReturnType<typeof toStatus> => {
    const st = toStatus(err);
    const level = st.code === Status.UNKNOWN || st.code === Status.INTERNAL ? 'error' : 'warn';
    log[level]({ code: Status[st.code], err: st.details, ms: Date.now() - started }, 'rpc failed');
    return st;
  };
  if (handler.kind === 'unary') {
    return ((call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
      const started = Date.now();
      handler.fn(call.request, ctx).then(
        (res) => {
          log.debug({ ms: Date.now() - started }, 'rpc done');
          callback(null, res);
        },
        (err: unknown) => callback(failed(err, started)),
      );
    }) as UntypedHandleCall;
  }
  return ((call: ServerWritableStream<unknown, unknown>) => {
    const started = Date.now();
    const run = async (): Promise<void> => {
      for await (const msg of handler.fn(call.request, ctx)) {
        if (call.cancelled) return;
        if (!call.write(msg)) await new Promise((resolve) => call.once('drain', resolve));
      }
    };
    run().then(
      () => call.end(),
      (err: unknown) => {
        const st = failed(err, started);
        call.emit('error', st);
      },
    );
  }) as UntypedHandleCall;
}

function implement(name: 'RuntimeService' | 'ImageService', ctx: CriContext): [ServiceDefinition, UntypedServiceImplementation] {
  const definition = loadCri()[name].service;
  const impl: UntypedServiceImplementation = {};
  const handlers: Record<string, AnyHandler | undefined> = HANDLERS[name];
  for (const method of Object.keys(definition)) {
    const handler = handlers[method];
    impl[method] = handler ? wrap(name, method, handler, ctx) : unimplemented(name, method, ctx);
  }
  return [definition, impl];
}

export interface CriServer {
  /** Lets in-flight RPCs finish for up to `graceMs`, then cuts the rest; closes the socket. */
  shutdown(graceMs: number): Promise<void>;
}

/**
 * Serves CRI on the unix socket at `socketPath`. berth owns the listening socket and hands each
 * connection to grpc-js through an AuthorityRewriter (see authority-rewriter.ts), so kubelets
 * that send the socket path as `:authority` are served too. The caller sets the socket's mode.
 */
export async function startCriServer(socketPath: string, ctx: CriContext): Promise<CriServer> {
  const server = new Server({
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    'grpc.max_send_message_length': 16 * 1024 * 1024,
  });
  for (const name of ['RuntimeService', 'ImageService'] as const) server.addService(...implement(name, ctx));
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  const connections = new Set<Socket>();
  const listener = createServer((socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
    const rewriter = new AuthorityRewriter();
    rewriter.once('error', (err: NodeJS.ErrnoException) => {
      // A client hanging up mid-frame is ordinary; only undecodable headers are worth a warning.
      if (err.code !== 'ERR_STREAM_PREMATURE_CLOSE') {
        ctx.log.warn({ err: err.message }, 'dropping a CRI connection whose HTTP/2 headers could not be decoded');
      }
      socket.destroy();
    });
    socket.once('error', () => socket.destroy());
    injector.injectConnection(Duplex.from({ readable: socket.pipe(rewriter), writable: socket }));
  });
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(socketPath, () => {
      listener.off('error', reject);
      resolve();
    });
  });
  return {
    shutdown: async (graceMs) => {
      const closed = new Promise<void>((resolve) => listener.close(() => resolve()));
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      injector.destroy();
      for (const socket of connections) socket.destroy();
      await closed;
    },
  };
}
