// Loads the CRI v1 proto (proto/runtime/v1/api.proto) into grpc-js service definitions. The same
// loader options serve the daemon and the project's own client so both see identical shapes:
// snake_case field names as on the wire, 64-bit integers as JS numbers, enums as their names.
import { loadPackageDefinition, type GrpcObject, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

export const CRI_PROTO_PATH = fileURLToPath(new URL('../../proto/runtime/v1/api.proto', import.meta.url));

export const LOADER_OPTIONS: Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: true,
};

export interface CriServices {
  RuntimeService: ServiceClientConstructor;
  ImageService: ServiceClientConstructor;
}

let cached: CriServices | undefined;

export function loadCri(): CriServices {
  if (!cached) {
    const pkg = loadPackageDefinition(loadSync(CRI_PROTO_PATH, LOADER_OPTIONS));
    const v1 = (pkg.runtime as GrpcObject).v1 as GrpcObject;
    cached = {
      RuntimeService: v1.RuntimeService as ServiceClientConstructor,
      ImageService: v1.ImageService as ServiceClientConstructor,
    };
  }
  return cached;
}

export const BERTH_PINS_PROTO_PATH = fileURLToPath(new URL('../../proto/berth/v1/pins.proto', import.meta.url));

let pins: ServiceClientConstructor | undefined;

/** berth's own `berth.v1.Pins` service (proto/berth/v1/pins.proto), served beside CRI. */
export function loadBerthPins(): ServiceClientConstructor {
  if (!pins) {
    const pkg = loadPackageDefinition(loadSync(BERTH_PINS_PROTO_PATH, LOADER_OPTIONS));
    pins = ((pkg.berth as GrpcObject).v1 as GrpcObject).Pins as ServiceClientConstructor;
  }
  return pins;
}

export const BERTH_NODE_PROTO_PATH = fileURLToPath(new URL('../../proto/berth/v1/node.proto', import.meta.url));

let node: ServiceClientConstructor | undefined;

/** berth's own `berth.v1.Node` service (proto/berth/v1/node.proto): host operations for the node agent. */
export function loadBerthNode(): ServiceClientConstructor {
  if (!node) {
    const pkg = loadPackageDefinition(loadSync(BERTH_NODE_PROTO_PATH, LOADER_OPTIONS));
    node = ((pkg.berth as GrpcObject).v1 as GrpcObject).Node as ServiceClientConstructor;
  }
  return node;
}
