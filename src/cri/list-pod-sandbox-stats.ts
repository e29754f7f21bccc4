// ListPodSandboxStats: usage of every ready pod a filter selects (ID prefix, labels).
import type { UnaryRpc } from './rpc.ts';
import type { ListPodSandboxStatsRequest__Output } from './gen/runtime/v1/ListPodSandboxStatsRequest.ts';
import type { ListPodSandboxStatsResponse } from './gen/runtime/v1/ListPodSandboxStatsResponse.ts';
import { podSandboxStats } from './stats-view.ts';
import { selects } from './runtime-view.ts';

export const listPodSandboxStats: UnaryRpc<ListPodSandboxStatsRequest__Output, ListPodSandboxStatsResponse> = async (req, ctx, signal) => {
  const f = req.filter;
  const chosen = ctx.sandboxes
    .list()
    .filter((sb) => sb.state === 'ready')
    .filter((sb) => !f?.id || sb.id.startsWith(f.id))
    .filter((sb) => selects(f?.label_selector, sb.config.labels, sb.owner));
  return { stats: await Promise.all(chosen.map((sb) => podSandboxStats(ctx, sb, signal))) };
};
