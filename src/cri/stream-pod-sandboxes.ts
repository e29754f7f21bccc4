// StreamPodSandboxes: ListPodSandbox in batches, for nodes with more pods than one message holds.
import type { StreamRpc } from './rpc.ts';
import type { StreamPodSandboxesRequest__Output } from './gen/runtime/v1/StreamPodSandboxesRequest.ts';
import type { StreamPodSandboxesResponse } from './gen/runtime/v1/StreamPodSandboxesResponse.ts';
import { filteredSandboxes } from './list-pod-sandbox.ts';

const BATCH = 500;

export const streamPodSandboxes: StreamRpc<StreamPodSandboxesRequest__Output, StreamPodSandboxesResponse> = async function* (req, ctx) {
  const all = filteredSandboxes(ctx, req.filter);
  for (let i = 0; i < all.length; i += BATCH) yield { pod_sandboxes: all.slice(i, i + BATCH) };
};
