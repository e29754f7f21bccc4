// UpdateContainerResources: new CPU / memory / hugepage limits for a live container.
import type { UnaryRpc } from './rpc.ts';
import type { UpdateContainerResourcesRequest__Output } from './gen/runtime/v1/UpdateContainerResourcesRequest.ts';
import type { UpdateContainerResourcesResponse } from './gen/runtime/v1/UpdateContainerResourcesResponse.ts';
import { invalidArgument } from '../util/errors.ts';

export const updateContainerResources: UnaryRpc<UpdateContainerResourcesRequest__Output, UpdateContainerResourcesResponse> = async (req, ctx, signal) => {
  if (!req.container_id) throw invalidArgument('container_id is required');
  if (!req.linux) throw invalidArgument('linux resources are required');
  await ctx.containers.updateResources(req.container_id, req.linux, signal);
  return {};
};
