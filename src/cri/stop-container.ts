// StopContainer: the stop signal, then SIGKILL once `timeout` seconds pass; stopping twice is fine.
import type { UnaryRpc } from './rpc.ts';
import type { StopContainerRequest__Output } from './gen/runtime/v1/StopContainerRequest.ts';
import type { StopContainerResponse } from './gen/runtime/v1/StopContainerResponse.ts';
import { invalidArgument } from '../util/errors.ts';

export const stopContainer: UnaryRpc<StopContainerRequest__Output, StopContainerResponse> = async (req, ctx, signal) => {
  if (!req.container_id) throw invalidArgument('container_id is required');
  if (req.timeout < 0) throw invalidArgument(`timeout ${req.timeout} must not be negative`);
  await ctx.containers.stop(req.container_id, req.timeout, signal);
  return {};
};
