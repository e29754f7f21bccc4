// StreamImages: ListImages in batches, so nodes with thousands of images stay under the gRPC
// message size limit.
import type { StreamRpc } from './rpc.ts';
import type { StreamImagesRequest__Output as StreamImagesRequest } from './gen/runtime/v1/StreamImagesRequest.ts';
import type { StreamImagesResponse } from './gen/runtime/v1/StreamImagesResponse.ts';
import { toCriImage } from './image-view.ts';

/** Images per message: small enough that even long tag lists fit well under 16 MiB. */
const BATCH = 500;

export const streamImages: StreamRpc<StreamImagesRequest, StreamImagesResponse> = async function* (req, ctx) {
  const filter = req.filter?.image?.image?.trim() || undefined;
  const images = ctx.images.list(filter).map(toCriImage);
  for (let i = 0; i < images.length; i += BATCH) yield { images: images.slice(i, i + BATCH) };
};
