// RemovePodSandbox: stops and removes the pod and its containers; an unknown ID is not an error.
import type { UnaryRpc } from './rpc.ts';
import type { RemovePodSandboxRequest__Output } from './gen/runtime/v1/RemovePodSandboxRequest.ts';
import type { RemovePodSandboxResponse } from './gen/runtime/v1/RemovePodSandboxResponse.ts';
import { invalidArgument } from '../util/errors.ts';

export const removePodSandbox: UnaryRpc<RemovePodSandboxRequest__Output, RemovePodSandboxResponse> = async (req, ctx, signal) => {
  if (!req.pod_sandbox_id) throw invalidArgument('pod_sandbox_id is required');
  await ctx.sandboxes.remove(req.pod_sandbox_id, signal);
  return {};
};
