// Shapes shared by the per-RPC handler files: what a handler receives and returns.
import type { Logger } from 'pino';
import type { BerthConfig } from '../config/config.ts';
import type { ImageService } from '../image/service.ts';
import type { RuntimeProbe } from '../runtime-probe.ts';
import type { StreamingServer } from '../streaming/server.ts';
import type { PodNetwork } from '../network/cni.ts';
import type { SandboxService } from '../sandbox/service.ts';
import type { ContainerService } from '../container/service.ts';
import type { KubeletSwitcher } from '../hostops/kubelet-switch.ts';
import type { PeerSet } from '../p2p/peers.ts';

/** What a handler may use: the daemon's services, never gRPC objects. */
export interface CriContext {
  config: BerthConfig;
  log: Logger;
  images: ImageService;
  probe: RuntimeProbe;
  /** Hands out the one-time URLs that Exec, Attach and PortForward answer with. */
  streaming: StreamingServer;
  network: PodNetwork;
  sandboxes: SandboxService;
  containers: ContainerService;
  /** Runs the kubelet switch / revert in a host unit for the node agent (berth.v1.Node). */
  kubelet: KubeletSwitcher;
  /** The p2p peers (berth.v1.Peers); undefined when `[p2p] listen` is not set. */
  peers: PeerSet | undefined;
}

/**
 * A handler's third argument fires when the client cancels, its deadline passes or the daemon
 * shuts down. Pass it to every wait and every outside process the call starts, so abandoned work
 * stops instead of running on for nobody.
 */
export type UnaryRpc<Req, Res> = (req: Req, ctx: CriContext, signal: AbortSignal) => Promise<Res>;
/**
 * Server-streaming RPCs yield response messages; the server writes each one in order. A stream
 * that waits for news (events) must end its waits when `signal` fires: the client has gone.
 */
export type StreamRpc<Req, Res> = (req: Req, ctx: CriContext, signal: AbortSignal) => AsyncIterable<Res>;
