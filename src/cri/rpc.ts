// Shapes shared by the per-RPC handler files: what a handler receives and returns.
import type { Logger } from 'pino';
import type { BerthConfig } from '../config/config.ts';
import type { ImageService } from '../image/service.ts';
import type { RuntimeProbe } from '../runtime-probe.ts';

/** What a handler may use: the daemon's services, never gRPC objects. */
export interface CriContext {
  config: BerthConfig;
  log: Logger;
  images: ImageService;
  probe: RuntimeProbe;
}

export type UnaryRpc<Req, Res> = (req: Req, ctx: CriContext) => Promise<Res>;
/** Server-streaming RPCs yield response messages; the server writes each one in order. */
export type StreamRpc<Req, Res> = (req: Req, ctx: CriContext) => AsyncIterable<Res>;
