// RunPodSandbox: creates the pod's namespaces and network, and returns its ID.
import type { UnaryRpc } from './rpc.ts';
import type { RunPodSandboxRequest__Output } from './gen/runtime/v1/RunPodSandboxRequest.ts';
import type { RunPodSandboxResponse } from './gen/runtime/v1/RunPodSandboxResponse.ts';
import { invalidArgument } from '../util/errors.ts';

export const runPodSandbox: UnaryRpc<RunPodSandboxRequest__Output, RunPodSandboxResponse> = async (req, ctx, signal) => {
  if (!req.config) throw invalidArgument('RunPodSandbox needs a config');
  const sb = await ctx.sandboxes.run({ config: req.config, runtimeHandler: req.runtime_handler, owner: 'cri' }, signal);
  return { pod_sandbox_id: sb.id };
};
