// StreamContainers: ListContainers in batches, for nodes with more containers than one message holds.
import type { StreamRpc } from './rpc.ts';
import type { StreamContainersRequest__Output } from './gen/runtime/v1/StreamContainersRequest.ts';
import type { StreamContainersResponse } from './gen/runtime/v1/StreamContainersResponse.ts';
import { filteredContainers } from './list-containers.ts';

const BATCH = 500;

export const streamContainers: StreamRpc<StreamContainersRequest__Output, StreamContainersResponse> = async function* (req, ctx) {
  const all = filteredContainers(ctx, req.filter);
  for (let i = 0; i < all.length; i += BATCH) yield { containers: all.slice(i, i + BATCH) };
};
