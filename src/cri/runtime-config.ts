// RuntimeConfig: tells the kubelet which cgroup driver to use so both manage cgroups the same way.
import type { UnaryRpc } from './rpc.ts';
import type { RuntimeConfigRequest, RuntimeConfigResponse } from './types.ts';

export const runtimeConfig: UnaryRpc<RuntimeConfigRequest, RuntimeConfigResponse> = async (_req, ctx) => ({
  linux: { cgroup_driver: ctx.config.cgroupDriver === 'systemd' ? 'SYSTEMD' : 'CGROUPFS' },
});
