import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { ListPeersRequest as _berth_v1_ListPeersRequest, ListPeersRequest__Output as _berth_v1_ListPeersRequest__Output } from './berth/v1/ListPeersRequest.ts';
import type { ListPeersResponse as _berth_v1_ListPeersResponse, ListPeersResponse__Output as _berth_v1_ListPeersResponse__Output } from './berth/v1/ListPeersResponse.ts';
import type { PeersClient as _berth_v1_PeersClient, PeersDefinition as _berth_v1_PeersDefinition } from './berth/v1/Peers.ts';
import type { SetPeersRequest as _berth_v1_SetPeersRequest, SetPeersRequest__Output as _berth_v1_SetPeersRequest__Output } from './berth/v1/SetPeersRequest.ts';
import type { SetPeersResponse as _berth_v1_SetPeersResponse, SetPeersResponse__Output as _berth_v1_SetPeersResponse__Output } from './berth/v1/SetPeersResponse.ts';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  berth: {
    v1: {
      ListPeersRequest: MessageTypeDefinition<_berth_v1_ListPeersRequest, _berth_v1_ListPeersRequest__Output>
      ListPeersResponse: MessageTypeDefinition<_berth_v1_ListPeersResponse, _berth_v1_ListPeersResponse__Output>
      Peers: SubtypeConstructor<typeof grpc.Client, _berth_v1_PeersClient> & { service: _berth_v1_PeersDefinition }
      SetPeersRequest: MessageTypeDefinition<_berth_v1_SetPeersRequest, _berth_v1_SetPeersRequest__Output>
      SetPeersResponse: MessageTypeDefinition<_berth_v1_SetPeersResponse, _berth_v1_SetPeersResponse__Output>
    }
  }
}

