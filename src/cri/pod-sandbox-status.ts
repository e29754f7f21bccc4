// PodSandboxStatus: state, IPs and namespaces of one pod, with berth's view of it when verbose.
import type { UnaryRpc } from './rpc.ts';
import type { PodSandboxStatusRequest__Output } from './gen/runtime/v1/PodSandboxStatusRequest.ts';
import type { PodSandboxStatusResponse } from './gen/runtime/v1/PodSandboxStatusResponse.ts';
import { invalidArgument } from '../util/errors.ts';
import { toContainerStatus, toPodSandboxStatus } from './runtime-view.ts';

export const podSandboxStatus: UnaryRpc<PodSandboxStatusRequest__Output, PodSandboxStatusResponse> = async (req, ctx) => {
  if (!req.pod_sandbox_id) throw invalidArgument('pod_sandbox_id is required');
  const sb = ctx.sandboxes.get(req.pod_sandbox_id);
  const info: Record<string, string> = {};
  if (req.verbose) {
    info.info = JSON.stringify({
      id: sb.id,
      owner: sb.owner,
      runtimeHandler: sb.runtimeHandler,
      netnsPath: sb.netnsPath ?? '',
      ipcPath: sb.ipcPath ?? '',
      utsPath: sb.utsPath ?? '',
      pid: sb.pidHolder?.pid ?? 0,
      dir: sb.dir,
      cgroupParent: sb.cgroupParent,
      config: sb.config,
    });
  }
  const containers = ctx.containers.list().filter((c) => c.sandboxId === sb.id).map(toContainerStatus);
  return { status: toPodSandboxStatus(sb), info, containers_statuses: containers, timestamp: Date.now() * 1e6 };
};
