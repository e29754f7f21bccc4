// ContainerStatus: state, exit code, times, mounts and log path from berth's record; with verbose,
// the runtime spec and PIDs as `crictl inspect` shows them.
import type { UnaryRpc } from './rpc.ts';
import type { ContainerStatusRequest__Output } from './gen/runtime/v1/ContainerStatusRequest.ts';
import type { ContainerStatusResponse } from './gen/runtime/v1/ContainerStatusResponse.ts';
import { invalidArgument } from '../util/errors.ts';
import { toContainerStatus } from './runtime-view.ts';

export const containerStatus: UnaryRpc<ContainerStatusRequest__Output, ContainerStatusResponse> = async (req, ctx) => {
  if (!req.container_id) throw invalidArgument('container_id is required');
  const c = ctx.containers.get(req.container_id);
  const info: Record<string, string> = {};
  if (req.verbose) {
    info.info = JSON.stringify({
      sandboxID: c.sandboxId,
      owner: c.owner,
      pid: c.state === 'running' ? c.pid : 0,
      conmonPid: c.conmonPid,
      runtimeHandler: c.runtimeHandler,
      cgroupsPath: c.cgroupsPath,
      imageId: c.image.id,
      runtimeSpec: await ctx.containers.spec(c.id),
      config: c.config,
    });
  }
  return { status: toContainerStatus(c), info };
};
