import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { NodeClient as _berth_v1_NodeClient, NodeDefinition as _berth_v1_NodeDefinition } from './berth/v1/Node.ts';
import type { SwitchKubeletRequest as _berth_v1_SwitchKubeletRequest, SwitchKubeletRequest__Output as _berth_v1_SwitchKubeletRequest__Output } from './berth/v1/SwitchKubeletRequest.ts';
import type { SwitchStatusRequest as _berth_v1_SwitchStatusRequest, SwitchStatusRequest__Output as _berth_v1_SwitchStatusRequest__Output } from './berth/v1/SwitchStatusRequest.ts';
import type { SwitchStatusResponse as _berth_v1_SwitchStatusResponse, SwitchStatusResponse__Output as _berth_v1_SwitchStatusResponse__Output } from './berth/v1/SwitchStatusResponse.ts';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  berth: {
    v1: {
      Node: SubtypeConstructor<typeof grpc.Client, _berth_v1_NodeClient> & { service: _berth_v1_NodeDefinition }
      SwitchKubeletRequest: MessageTypeDefinition<_berth_v1_SwitchKubeletRequest, _berth_v1_SwitchKubeletRequest__Output>
      SwitchState: EnumTypeDefinition
      SwitchStatusRequest: MessageTypeDefinition<_berth_v1_SwitchStatusRequest, _berth_v1_SwitchStatusRequest__Output>
      SwitchStatusResponse: MessageTypeDefinition<_berth_v1_SwitchStatusResponse, _berth_v1_SwitchStatusResponse__Output>
    }
  }
}

