// berth.v1.Peers/SetPeers: replaces the p2p peer list the node agent keeps (static config peers stay).
import type { UnaryRpc } from './rpc.ts';
import type { SetPeersRequest__Output } from './gen-berth/berth/v1/SetPeersRequest.ts';
import type { SetPeersResponse } from './gen-berth/berth/v1/SetPeersResponse.ts';
import { failedPrecondition } from '../util/errors.ts';

export const setPeers: UnaryRpc<SetPeersRequest__Output, SetPeersResponse> = async (req, ctx) => {
  if (!ctx.peers) throw failedPrecondition('p2p is off in this berthd: set [p2p] listen in its config.toml (docs/config.md) and restart it, or stop sending peers');
  return { peers: ctx.peers.set(req.peers) };
};
