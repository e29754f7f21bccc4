// grpc-js service definitions and client constructors for CRI v1 (runtime.v1) and berth's own
// services (berth.v1), built from the descriptor compiled ahead of time from proto/
// (src/cri/descriptor.json, by hack/gen-types.sh) and encoded by src/cri/codec.ts. The daemon and
// the project's own client share them, so both see identical shapes.
import { makeGenericClientConstructor, type ServiceClientConstructor, type ServiceDefinition } from '@grpc/grpc-js';
import { Codec, type Descriptor } from './codec.ts';
// A JSON module, so a bundle (hack/build-image.ts, hack/bundle-controller.ts) carries it inside.
import descriptorJson from './descriptor.json' with { type: 'json' };

const descriptor = descriptorJson as unknown as Descriptor;
let codec: Codec | undefined;
const services = new Map<string, ServiceClientConstructor>();

/** The client constructor of one service by its full name, e.g. `runtime.v1.ImageService`; its `service` is the server's definition. */
export function loadService(fullName: string): ServiceClientConstructor {
  let ctor = services.get(fullName);
  if (ctor) return ctor;
  codec ??= new Codec(descriptor);
  const methods = descriptor.services[fullName];
  if (!methods) throw new Error(`no service ${fullName} in src/cri/descriptor.json; run bash hack/gen-types.sh`);
  const definition: Record<string, ServiceDefinition[string]> = {};
  for (const m of methods) {
    const req = codec.type(m.request);
    const res = codec.type(m.response);
    definition[m.name] = {
      path: `/${fullName}/${m.name}`,
      requestStream: false,
      responseStream: m.stream === true,
      requestSerialize: (o: object) => req.encode(o),
      requestDeserialize: (b: Buffer) => req.decode(b),
      responseSerialize: (o: object) => res.encode(o),
      responseDeserialize: (b: Buffer) => res.decode(b),
      originalName: m.name,
    };
  }
  ctor = makeGenericClientConstructor(definition, fullName);
  services.set(fullName, ctor);
  return ctor;
}

export interface CriServices {
  RuntimeService: ServiceClientConstructor;
  ImageService: ServiceClientConstructor;
}

export function loadCri(): CriServices {
  return { RuntimeService: loadService('runtime.v1.RuntimeService'), ImageService: loadService('runtime.v1.ImageService') };
}

/** berth's own `berth.v1.Pins` service (proto/berth/v1/pins.proto), served beside CRI. */
export function loadBerthPins(): ServiceClientConstructor {
  return loadService('berth.v1.Pins');
}

/** berth's own `berth.v1.Node` service (proto/berth/v1/node.proto): host operations for the node agent. */
export function loadBerthNode(): ServiceClientConstructor {
  return loadService('berth.v1.Node');
}

/** berth's own `berth.v1.Peers` service (proto/berth/v1/peers.proto): the node's p2p peers. */
export function loadBerthPeers(): ServiceClientConstructor {
  return loadService('berth.v1.Peers');
}
