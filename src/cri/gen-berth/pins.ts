import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { ListPinsRequest as _berth_v1_ListPinsRequest, ListPinsRequest__Output as _berth_v1_ListPinsRequest__Output } from './berth/v1/ListPinsRequest.ts';
import type { ListPinsResponse as _berth_v1_ListPinsResponse, ListPinsResponse__Output as _berth_v1_ListPinsResponse__Output } from './berth/v1/ListPinsResponse.ts';
import type { PinSet as _berth_v1_PinSet, PinSet__Output as _berth_v1_PinSet__Output } from './berth/v1/PinSet.ts';
import type { PinsClient as _berth_v1_PinsClient, PinsDefinition as _berth_v1_PinsDefinition } from './berth/v1/Pins.ts';
import type { SetPinsRequest as _berth_v1_SetPinsRequest, SetPinsRequest__Output as _berth_v1_SetPinsRequest__Output } from './berth/v1/SetPinsRequest.ts';
import type { SetPinsResponse as _berth_v1_SetPinsResponse, SetPinsResponse__Output as _berth_v1_SetPinsResponse__Output } from './berth/v1/SetPinsResponse.ts';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  berth: {
    v1: {
      ListPinsRequest: MessageTypeDefinition<_berth_v1_ListPinsRequest, _berth_v1_ListPinsRequest__Output>
      ListPinsResponse: MessageTypeDefinition<_berth_v1_ListPinsResponse, _berth_v1_ListPinsResponse__Output>
      PinSet: MessageTypeDefinition<_berth_v1_PinSet, _berth_v1_PinSet__Output>
      Pins: SubtypeConstructor<typeof grpc.Client, _berth_v1_PinsClient> & { service: _berth_v1_PinsDefinition }
      SetPinsRequest: MessageTypeDefinition<_berth_v1_SetPinsRequest, _berth_v1_SetPinsRequest__Output>
      SetPinsResponse: MessageTypeDefinition<_berth_v1_SetPinsResponse, _berth_v1_SetPinsResponse__Output>
    }
  }
}

