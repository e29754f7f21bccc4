// Status: whether the runtime and the pod network are ready, with a reason when they are not.
import type { UnaryRpc } from './rpc.ts';
import type { StatusRequest__Output as StatusRequest } from './gen/runtime/v1/StatusRequest.ts';
import type { StatusResponse } from './gen/runtime/v1/StatusResponse.ts';
import type { RuntimeCondition } from './gen/runtime/v1/RuntimeCondition.ts';
import { shownConfig } from '../config/config.ts';

export const status: UnaryRpc<StatusRequest, StatusResponse> = async (req, ctx) => {
  const probe = await ctx.probe.check();
  await ctx.network.refresh();
  const network = ctx.network.ready();
  const conditions: RuntimeCondition[] = [
    {
      type: 'RuntimeReady',
      status: probe.runtimeReady,
      reason: probe.runtimeReady ? '' : 'OCIRuntimeMissing',
      message: probe.runtimeMessage,
    },
    {
      type: 'NetworkReady',
      status: network.ready,
      reason: network.reason,
      message: network.message,
    },
  ];
  const info: Record<string, string> = {};
  if (req.verbose) {
    info.config = JSON.stringify(shownConfig(ctx.config));
    info.network = JSON.stringify(ctx.network.current() ?? null);
  }
  return {
    status: { conditions },
    info,
    runtime_handlers: probe.handlers.map((name) => ({
      name,
      features: { recursive_read_only_mounts: false, user_namespaces: false },
    })),
    features: { supplemental_groups_policy: false, user_namespaces_host_network: false, mount_options: false },
  };
};
