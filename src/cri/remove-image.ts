// RemoveImage: drops the image with all of its tags; idempotent, so an unknown image is success.
import type { UnaryRpc } from './rpc.ts';
import type { RemoveImageRequest__Output as RemoveImageRequest } from './gen/runtime/v1/RemoveImageRequest.ts';
import type { RemoveImageResponse } from './gen/runtime/v1/RemoveImageResponse.ts';
import { requireImageName } from './image-view.ts';

export const removeImage: UnaryRpc<RemoveImageRequest, RemoveImageResponse> = async (req, ctx) => {
  await ctx.images.remove(requireImageName(req.image, 'RemoveImage'));
  return {};
};
