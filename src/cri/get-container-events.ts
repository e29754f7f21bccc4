// GetContainerEvents: created / started / stopped / deleted events for the kubelet's evented PLEG,
// streamed until the client leaves.
import type { StreamRpc } from './rpc.ts';
import type { GetEventsRequest__Output } from './gen/runtime/v1/GetEventsRequest.ts';
import type { ContainerEventResponse } from './gen/runtime/v1/ContainerEventResponse.ts';
import { toContainerStatus, toPodSandboxStatus } from './runtime-view.ts';

export const getContainerEvents: StreamRpc<GetEventsRequest__Output, ContainerEventResponse> = async function* (_req, ctx, signal) {
  for await (const ev of ctx.containers.events.subscribe(signal)) {
    const sb = ctx.sandboxes.find(ev.sandboxId);
    if (sb && sb.owner !== 'cri') continue;
    yield {
      container_id: ev.containerId,
      container_event_type: ev.kind,
      created_at: ev.at,
      pod_sandbox_status: sb ? toPodSandboxStatus(sb) : null,
      containers_statuses: ctx.containers.list().filter((c) => c.sandboxId === ev.sandboxId).map(toContainerStatus),
    };
  }
};
