// ListPodSandbox: pods filtered by ID prefix, state and label selector.
import type { UnaryRpc } from './rpc.ts';
import type { ListPodSandboxRequest__Output } from './gen/runtime/v1/ListPodSandboxRequest.ts';
import type { ListPodSandboxResponse } from './gen/runtime/v1/ListPodSandboxResponse.ts';
import type { PodSandboxFilter__Output } from './gen/runtime/v1/PodSandboxFilter.ts';
import type { CriContext } from './rpc.ts';
import type { PodSandbox } from './gen/runtime/v1/PodSandbox.ts';
import { sandboxState, selects, toPodSandbox } from './runtime-view.ts';

export function filteredSandboxes(ctx: CriContext, f: PodSandboxFilter__Output | null): PodSandbox[] {
  return ctx.sandboxes
    .list()
    .filter((sb) => !f?.id || sb.id.startsWith(f.id))
    .filter((sb) => !f?.state || sandboxState(sb) === f.state.state)
    .filter((sb) => selects(f?.label_selector, sb.config.labels, sb.owner))
    .sort((a, b) => a.createdAt - b.createdAt)
    .map(toPodSandbox);
}

export const listPodSandbox: UnaryRpc<ListPodSandboxRequest__Output, ListPodSandboxResponse> = async (req, ctx) => ({
  items: filteredSandboxes(ctx, req.filter),
});
