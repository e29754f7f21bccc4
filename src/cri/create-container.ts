// CreateContainer: builds the container (rootfs, spec) and has conmon create it, not yet started.
import type { UnaryRpc } from './rpc.ts';
import type { CreateContainerRequest__Output } from './gen/runtime/v1/CreateContainerRequest.ts';
import type { CreateContainerResponse } from './gen/runtime/v1/CreateContainerResponse.ts';
import { invalidArgument } from '../util/errors.ts';

export const createContainer: UnaryRpc<CreateContainerRequest__Output, CreateContainerResponse> = async (req, ctx, signal) => {
  if (!req.pod_sandbox_id) throw invalidArgument('pod_sandbox_id is required');
  if (!req.config) throw invalidArgument('CreateContainer needs a config');
  const c = await ctx.containers.create({ sandboxId: req.pod_sandbox_id, config: req.config, owner: 'cri' }, signal);
  return { container_id: c.id };
};
