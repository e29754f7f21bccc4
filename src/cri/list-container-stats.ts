// ListContainerStats: usage of every container a filter selects (ID prefix, pod, labels).
import type { UnaryRpc } from './rpc.ts';
import type { ListContainerStatsRequest__Output } from './gen/runtime/v1/ListContainerStatsRequest.ts';
import type { ListContainerStatsResponse } from './gen/runtime/v1/ListContainerStatsResponse.ts';
import { containerStats } from './stats-view.ts';
import { filteredContainerRecords } from './list-containers.ts';

export const listContainerStats: UnaryRpc<ListContainerStatsRequest__Output, ListContainerStatsResponse> = async (req, ctx, signal) => {
  const chosen = filteredContainerRecords(ctx, req.filter).filter((c) => c.state !== 'exited');
  return { stats: await Promise.all(chosen.map((c) => containerStats(ctx, c, signal))) };
};
