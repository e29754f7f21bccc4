// ContainerStats: CPU, memory and writable-layer usage of one container.
import type { UnaryRpc } from './rpc.ts';
import type { ContainerStatsRequest__Output } from './gen/runtime/v1/ContainerStatsRequest.ts';
import type { ContainerStatsResponse } from './gen/runtime/v1/ContainerStatsResponse.ts';
import { invalidArgument } from '../util/errors.ts';
import { containerStats as statsOf } from './stats-view.ts';

export const containerStats: UnaryRpc<ContainerStatsRequest__Output, ContainerStatsResponse> = async (req, ctx, signal) => {
  if (!req.container_id) throw invalidArgument('container_id is required');
  return { stats: await statsOf(ctx, ctx.containers.get(req.container_id), signal) };
};
