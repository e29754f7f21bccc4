// ImageStatus: one image by reference or ID; an unknown image is an empty answer, not an error,
// as the CRI contract asks. `verbose` adds the image config as JSON.
import type { UnaryRpc } from './rpc.ts';
import type { ImageStatusRequest__Output as ImageStatusRequest } from './gen/runtime/v1/ImageStatusRequest.ts';
import type { ImageStatusResponse } from './gen/runtime/v1/ImageStatusResponse.ts';
import { requireImageName, toCriImage } from './image-view.ts';

export const imageStatus: UnaryRpc<ImageStatusRequest, ImageStatusResponse> = async (req, ctx) => {
  const name = requireImageName(req.image, 'ImageStatus');
  const view = ctx.images.find(name);
  if (!view) return { image: null, info: {} };
  const info: Record<string, string> = {};
  if (req.verbose) info.info = JSON.stringify(await ctx.images.verboseInfo(view.id));
  return { image: toCriImage(view), info };
};
