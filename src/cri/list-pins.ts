// berth.v1.Pins/ListPins: every owner's pins, or one owner's.
import type { UnaryRpc } from './rpc.ts';
import type { ListPinsRequest__Output } from './gen-berth/berth/v1/ListPinsRequest.ts';
import type { ListPinsResponse } from './gen-berth/berth/v1/ListPinsResponse.ts';

export const listPins: UnaryRpc<ListPinsRequest__Output, ListPinsResponse> = async (req, ctx) => {
  return { pins: ctx.images.listPins(req.owner || undefined) };
};
