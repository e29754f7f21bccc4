// Which RPCs berth implements, by service. An RPC missing here answers UNIMPLEMENTED (see server.ts).
import type { StreamRpc, UnaryRpc } from './rpc.ts';
import { version } from './version.ts';
import { status } from './status.ts';
import { runtimeConfig } from './runtime-config.ts';
import { updateRuntimeConfig } from './update-runtime-config.ts';
import { listImages } from './list-images.ts';
import { streamImages } from './stream-images.ts';
import { imageStatus } from './image-status.ts';
import { pullImage } from './pull-image.ts';
import { removeImage } from './remove-image.ts';
import { imageFsInfo } from './image-fs-info.ts';

export type AnyHandler =
  | { kind: 'unary'; fn: UnaryRpc<unknown, unknown> }
  | { kind: 'stream'; fn: StreamRpc<unknown, unknown> };

// The request types are erased here: grpc-js hands over decoded messages of the RPC's own type.
export const unary = <Req, Res>(fn: UnaryRpc<Req, Res>): AnyHandler => ({ kind: 'unary', fn: fn as UnaryRpc<unknown, unknown> });
const stream = <Req, Res>(fn: StreamRpc<Req, Res>): AnyHandler => ({ kind: 'stream', fn: fn as StreamRpc<unknown, unknown> });

export const HANDLERS: Record<'RuntimeService' | 'ImageService', Record<string, AnyHandler>> = {
  RuntimeService: {
    Version: unary(version),
    Status: unary(status),
    RuntimeConfig: unary(runtimeConfig),
    UpdateRuntimeConfig: unary(updateRuntimeConfig),
  },
  ImageService: {
    ListImages: unary(listImages),
    StreamImages: stream(streamImages),
    ImageStatus: unary(imageStatus),
    PullImage: unary(pullImage),
    RemoveImage: unary(removeImage),
    ImageFsInfo: unary(imageFsInfo),
  },
};
