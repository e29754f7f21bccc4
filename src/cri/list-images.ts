// ListImages: every image, or only the one the filter names.
import type { UnaryRpc } from './rpc.ts';
import type { ListImagesRequest__Output as ListImagesRequest } from './gen/runtime/v1/ListImagesRequest.ts';
import type { ListImagesResponse } from './gen/runtime/v1/ListImagesResponse.ts';
import { toCriImage } from './image-view.ts';

export const listImages: UnaryRpc<ListImagesRequest, ListImagesResponse> = async (req, ctx) => {
  const filter = req.filter?.image?.image?.trim() || undefined;
  return { images: ctx.images.list(filter).map(toCriImage) };
};
