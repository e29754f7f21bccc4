// The gRPC server: registers every RPC of RuntimeService and ImageService, and berth's own Pins, Node and Peers
// services, on one unix socket.
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
import { loadBerthNode, loadBerthPeers, loadBerthPins, loadCri } from './proto.ts';
import { AuthorityRewriter } from './authority-rewriter.ts';
import { toStatus } from './errors.ts';
import { BerthError } from '../util/errors.ts';
import { HANDLERS, type AnyHandler } from './handlers.ts';
import { BERTH_HANDLERS } from './berth-handlers.ts';
import type { CriContext } from './rpc.ts';
import { HeapCollector } from '../util/heap-collector.ts';

/**
 * A full collection every 200 unary calls. Each call leaves garbage that holds C++ memory (HTTP/2
 * stream state, headers) until a full collection, which V8 does not run for a small heap; a burst
 * of calls (a kubelet's relist, the bench's 800-call loops) otherwise piles that memory up in
 * glibc's main heap. Measured, 900 calls: RSS +15 -> +7 MiB. glibc keeps what is freed below a
 * live chunk, so malloc_trim follows each collection. One collection of the ~15 MiB heap costs a
 * few ms, 1 call in 200.
 */
const rpcHeap = new HeapCollector({ minorEvery: Number.POSITIVE_INFINITY, majorEvery: 200, trimAfterMajor: true });

function unimplemented(service: string, method: string, ctx: CriContext): UntypedHandleCall {
  const details = `${service}.${method} is not implemented by berth yet`;
  return ((call: ServerWritableStream<unknown, unknown>, callback?: sendUnaryData<unknown>) => {
    ctx.log.debug({ rpc: `${service}.${method}` }, 'unimplemented rpc called');
    if (callback) callback({ code: Status.UNIMPLEMENTED, details });
    else call.emit('error', { code: Status.UNIMPLEMENTED, details });
  }) as UntypedHandleCall;
}

/**
 * One AbortController per call. It fires when the client cancels or hangs up, when the call's
 * deadline passes (grpc-js reports that as a cancel too; the timer is the backstop) and when the
 * daemon cuts calls off at shutdown.
 */
function callSignal(call: ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>, live: Set<AbortController>): { signal: AbortSignal; done: () => void } {
  const ac = new AbortController();
  live.add(ac);
  const cancel = (): void => ac.abort(new BerthError('cancelled', 'the client cancelled the call or its deadline passed'));
  call.once('cancelled', cancel);
  let timer: NodeJS.Timeout | undefined;
  const deadline = call.getDeadline();
  const ms = deadline instanceof Date ? deadline.getTime() - Date.now() : Number.isFinite(deadline) ? deadline - Date.now() : Infinity;
  if (Number.isFinite(ms)) timer = setTimeout(cancel, Math.max(0, ms));
  return {
    signal: ac.signal,
    done: () => {
      live.delete(ac);
      call.off('cancelled', cancel);
      clearTimeout(timer);
    },
  };
}

/** Resolves when the stream can take more, or when the call is over: a gone client never drains. */
function drained(call: ServerWritableStream<unknown, unknown>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const finish = (): void => {
      call.off('drain', finish);
      signal.removeEventListener('abort', finish);
      resolve();
    };
    call.once('drain', finish);
    signal.addEventListener('abort', finish, { once: true });
    if (signal.aborted) finish();
  });
}

function wrap(service: string, method: string, handler: AnyHandler, ctx: CriContext, live: Set<AbortController>): UntypedHandleCall {
  const log = ctx.log.child({ rpc: `${service}.${method}` });
  const failed = (err: unknown, started: number): ReturnType<typeof toStatus> => {
    const st = toStatus(err);
    const level = st.code === Status.UNKNOWN || st.code === Status.INTERNAL ? 'error' : 'warn';
    log[level]({ code: Status[st.code], err: st.details, ms: Date.now() - started }, 'rpc failed');
    return st;
  };
  if (handler.kind === 'unary') {
    return ((call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
      rpcHeap.passed(1);
      const started = Date.now();
      const { signal, done } = callSignal(call, live);
      handler.fn(call.request, ctx, signal).then(
        (res) => {
          done();
          log.debug({ ms: Date.now() - started }, 'rpc done');
          callback(null, res);
        },
        (err: unknown) => {
          done();
          callback(failed(err, started));
        },
      );
    }) as UntypedHandleCall;
  }
  return ((call: ServerWritableStream<unknown, unknown>) => {
    const started = Date.now();
    const { signal, done } = callSignal(call, live);
    const run = async (): Promise<void> => {
      // Leaving the loop early runs the generator's finally blocks, so it releases what it holds.
      for await (const msg of handler.fn(call.request, ctx, signal)) {
        if (signal.aborted) return;
        if (!call.write(msg)) await drained(call, signal);
        if (signal.aborted) return;
      }
    };
    run().then(
      () => {
        done();
        log.debug({ ms: Date.now() - started, cancelled: signal.aborted }, 'stream ended');
        if (!signal.aborted) call.end();
      },
      (err: unknown) => {
        done();
        log.debug({ ms: Date.now() - started, cancelled: signal.aborted }, 'stream ended');
        const st = failed(err, started);
        if (!signal.aborted) call.emit('error', st);
      },
    );
  }) as UntypedHandleCall;
}

function implement(name: string, definition: ServiceDefinition, handlers: Record<string, AnyHandler | undefined>, ctx: CriContext, live: Set<AbortController>): [ServiceDefinition, UntypedServiceImplementation] {
  const impl: UntypedServiceImplementation = {};
  for (const method of Object.keys(definition)) {
    const handler = handlers[method];
    impl[method] = handler ? wrap(name, method, handler, ctx, live) : unimplemented(name, method, ctx);
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
  const live = new Set<AbortController>();
  for (const name of ['RuntimeService', 'ImageService'] as const) server.addService(...implement(name, loadCri()[name].service, HANDLERS[name], ctx, live));
  // berth's own services (proto/berth/v1/) share the socket and the handler wrapper.
  server.addService(...implement('berth.v1.Pins', loadBerthPins().service, BERTH_HANDLERS.Pins, ctx, live));
  server.addService(...implement('berth.v1.Node', loadBerthNode().service, BERTH_HANDLERS.Node, ctx, live));
  server.addService(...implement('berth.v1.Peers', loadBerthPeers().service, BERTH_HANDLERS.Peers, ctx, live));
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
          for (const ac of live) ac.abort(new BerthError('unavailable', 'berthd is shutting down'));
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
