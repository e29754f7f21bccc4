// berth.v1.Pins/SetPins: replaces the image names an owner pins (so CRI reports them `pinned`).
import type { UnaryRpc } from './rpc.ts';
import type { SetPinsRequest__Output } from './gen-berth/berth/v1/SetPinsRequest.ts';
import type { SetPinsResponse } from './gen-berth/berth/v1/SetPinsResponse.ts';

export const setPins: UnaryRpc<SetPinsRequest__Output, SetPinsResponse> = async (req, ctx) => {
  return { images: await ctx.images.setPins(req.owner, req.images) };
};
