// ReopenContainerLog: after the kubelet rotated a log file, conmon starts writing a new one.
import type { UnaryRpc } from './rpc.ts';
import type { ReopenContainerLogRequest__Output } from './gen/runtime/v1/ReopenContainerLogRequest.ts';
import type { ReopenContainerLogResponse } from './gen/runtime/v1/ReopenContainerLogResponse.ts';
import { invalidArgument } from '../util/errors.ts';

export const reopenContainerLog: UnaryRpc<ReopenContainerLogRequest__Output, ReopenContainerLogResponse> = async (req, ctx) => {
  if (!req.container_id) throw invalidArgument('container_id is required');
  await ctx.containers.reopenLog(req.container_id);
  return {};
};
