// PodSandboxStats: CPU, memory, network and process usage of one pod and its containers.
import type { UnaryRpc } from './rpc.ts';
import type { PodSandboxStatsRequest__Output } from './gen/runtime/v1/PodSandboxStatsRequest.ts';
import type { PodSandboxStatsResponse } from './gen/runtime/v1/PodSandboxStatsResponse.ts';
import { invalidArgument } from '../util/errors.ts';
import { podSandboxStats as statsOf } from './stats-view.ts';

export const podSandboxStats: UnaryRpc<PodSandboxStatsRequest__Output, PodSandboxStatsResponse> = async (req, ctx, signal) => {
  if (!req.pod_sandbox_id) throw invalidArgument('pod_sandbox_id is required');
  return { stats: await statsOf(ctx, ctx.sandboxes.get(req.pod_sandbox_id), signal) };
};
