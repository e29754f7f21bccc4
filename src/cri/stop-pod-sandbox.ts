// StopPodSandbox: kills the pod's containers and releases its network; stopping twice is fine.
import type { UnaryRpc } from './rpc.ts';
import type { StopPodSandboxRequest__Output } from './gen/runtime/v1/StopPodSandboxRequest.ts';
import type { StopPodSandboxResponse } from './gen/runtime/v1/StopPodSandboxResponse.ts';
import { invalidArgument } from '../util/errors.ts';

export const stopPodSandbox: UnaryRpc<StopPodSandboxRequest__Output, StopPodSandboxResponse> = async (req, ctx, signal) => {
  if (!req.pod_sandbox_id) throw invalidArgument('pod_sandbox_id is required');
  await ctx.sandboxes.stop(req.pod_sandbox_id, signal);
  return {};
};
