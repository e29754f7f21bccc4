// PullImage: fetches an image (with the kubelet's credentials, if any) and answers its ID.
import type { UnaryRpc } from './rpc.ts';
import type { PullImageRequest__Output as PullImageRequest } from './gen/runtime/v1/PullImageRequest.ts';
import type { PullImageResponse } from './gen/runtime/v1/PullImageResponse.ts';
import { requireImageName } from './image-view.ts';
import type { PullAuth } from '../image/registry/config.ts';

export const pullImage: UnaryRpc<PullImageRequest, PullImageResponse> = async (req, ctx, signal) => {
  const name = requireImageName(req.image, 'PullImage');
  const a = req.auth;
  const credentials: PullAuth | undefined =
    a && (a.username || a.password || a.auth || a.identity_token || a.registry_token)
      ? {
          username: a.username || undefined,
          password: a.password || undefined,
          auth: a.auth || undefined,
          identityToken: a.identity_token || undefined,
          registryToken: a.registry_token || undefined,
          serverAddress: a.server_address || undefined,
        }
      : undefined;
  const id = await ctx.images.pull(name, credentials, signal);
  return { image_ref: id };
};
