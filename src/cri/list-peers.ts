// berth.v1.Peers/ListPeers: whether p2p is on, where it listens, and the peers from config and agent.
import type { UnaryRpc } from './rpc.ts';
import type { ListPeersRequest__Output } from './gen-berth/berth/v1/ListPeersRequest.ts';
import type { ListPeersResponse } from './gen-berth/berth/v1/ListPeersResponse.ts';
import { formatPeer } from '../p2p/peers.ts';

export const listPeers: UnaryRpc<ListPeersRequest__Output, ListPeersResponse> = async (_req, ctx) => {
  const { listen } = ctx.config.p2p;
  if (!ctx.peers || !listen) return { enabled: false, listen: '', static_peers: [], pushed_peers: [] };
  return { enabled: true, listen: formatPeer(listen), static_peers: ctx.peers.staticPeers, pushed_peers: ctx.peers.pushedPeers };
};
