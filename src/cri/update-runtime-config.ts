// UpdateRuntimeConfig: the kubelet hands over the node's pod CIDR; berth's own default network
// takes it as its subnet (an admin's CNI config is left as it is).
import type { UnaryRpc } from './rpc.ts';
import type { UpdateRuntimeConfigRequest__Output } from './gen/runtime/v1/UpdateRuntimeConfigRequest.ts';
import type { UpdateRuntimeConfigResponse } from './gen/runtime/v1/UpdateRuntimeConfigResponse.ts';

export const updateRuntimeConfig: UnaryRpc<UpdateRuntimeConfigRequest__Output, UpdateRuntimeConfigResponse> = async (req, ctx) => {
  const cidr = req.runtime_config?.network_config?.pod_cidr ?? '';
  // The kubelet sends an empty CIDR before the node has one: nothing to change yet.
  if (cidr !== '') await ctx.network.updatePodCidr(cidr);
  return {};
};
