// RemoveContainer: kills if needed and removes the container; an unknown ID is not an error.
import type { UnaryRpc } from './rpc.ts';
import type { RemoveContainerRequest__Output } from './gen/runtime/v1/RemoveContainerRequest.ts';
import type { RemoveContainerResponse } from './gen/runtime/v1/RemoveContainerResponse.ts';
import { invalidArgument } from '../util/errors.ts';

export const removeContainer: UnaryRpc<RemoveContainerRequest__Output, RemoveContainerResponse> = async (req, ctx, signal) => {
  if (!req.container_id) throw invalidArgument('container_id is required');
  await ctx.containers.remove(req.container_id, signal);
  return {};
};
