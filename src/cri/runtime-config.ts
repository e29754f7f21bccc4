// RuntimeConfig: tells the kubelet which cgroup driver to use so both manage cgroups the same way.
import type { UnaryRpc } from './rpc.ts';
import type { RuntimeConfigRequest__Output as RuntimeConfigRequest } from './gen/runtime/v1/RuntimeConfigRequest.ts';
import type { RuntimeConfigResponse } from './gen/runtime/v1/RuntimeConfigResponse.ts';

export const runtimeConfig: UnaryRpc<RuntimeConfigRequest, RuntimeConfigResponse> = async (_req, ctx) => ({
  linux: { cgroup_driver: ctx.config.cgroupDriver === 'systemd' ? 'SYSTEMD' : 'CGROUPFS' },
});
