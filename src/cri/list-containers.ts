// ListContainers: containers filtered by ID prefix, state, pod and label selector.
import type { UnaryRpc, CriContext } from './rpc.ts';
import type { ListContainersRequest__Output } from './gen/runtime/v1/ListContainersRequest.ts';
import type { ListContainersResponse } from './gen/runtime/v1/ListContainersResponse.ts';
import type { ContainerFilter__Output } from './gen/runtime/v1/ContainerFilter.ts';
import type { ContainerRecord } from '../container/record.ts';
import { containerState, selects, toContainer } from './runtime-view.ts';
import type { Container } from './gen/runtime/v1/Container.ts';

export function filteredContainerRecords(ctx: CriContext, f: { id?: string; pod_sandbox_id?: string; label_selector?: Record<string, string>; state?: ContainerFilter__Output['state'] } | null): ContainerRecord[] {
  return ctx.containers
    .list()
    .filter((c) => !f?.id || c.id.startsWith(f.id))
    .filter((c) => !f?.pod_sandbox_id || c.sandboxId.startsWith(f.pod_sandbox_id))
    .filter((c) => !f?.state || containerState(c) === f.state.state)
    .filter((c) => selects(f?.label_selector, c.config.labels, c.owner))
    .sort((a, b) => a.createdAt - b.createdAt);
}

export function filteredContainers(ctx: CriContext, f: ContainerFilter__Output | null): Container[] {
  return filteredContainerRecords(ctx, f).map(toContainer);
}

export const listContainers: UnaryRpc<ListContainersRequest__Output, ListContainersResponse> = async (req, ctx) => ({
  containers: filteredContainers(ctx, req.filter),
});
