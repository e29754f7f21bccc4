// berth.v1.Node/SwitchKubelet: starts moving the kubelet onto berth (or back) in a host unit.
import type { UnaryRpc } from './rpc.ts';
import type { SwitchKubeletRequest__Output } from './gen-berth/berth/v1/SwitchKubeletRequest.ts';
import type { SwitchStatusResponse } from './gen-berth/berth/v1/SwitchStatusResponse.ts';
import { failedPrecondition, invalidArgument } from '../util/errors.ts';
import { switchStatusView } from './switch-status.ts';

export const switchKubelet: UnaryRpc<SwitchKubeletRequest__Output, SwitchStatusResponse> = async (req, ctx) => {
  if (req.drained && req.revert) throw invalidArgument('ask for either a switch (drained) or a revert, not both');
  if (!req.revert && !req.drained) throw failedPrecondition('refusing to switch the kubelet: cordon and drain the node first, then ask with drained=true');
  return switchStatusView(ctx.kubelet.start(req.revert));
};
