// StartContainer: runs a created container's process.
import type { UnaryRpc } from './rpc.ts';
import type { StartContainerRequest__Output } from './gen/runtime/v1/StartContainerRequest.ts';
import type { StartContainerResponse } from './gen/runtime/v1/StartContainerResponse.ts';
import { invalidArgument } from '../util/errors.ts';

export const startContainer: UnaryRpc<StartContainerRequest__Output, StartContainerResponse> = async (req, ctx, signal) => {
  if (!req.container_id) throw invalidArgument('container_id is required');
  await ctx.containers.start(req.container_id, signal);
  return {};
};
