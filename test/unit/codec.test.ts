// src/cri/codec.ts against @grpc/proto-loader (what it replaces at run time), for every message type
// of every service berth serves: each encodes what the other decodes to the same object, and both
// decode an empty message to the same defaults. Sample objects set every field, with negative and
// wide integers, enums, nested messages, repeated fields and maps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadSync } from '@grpc/proto-loader';
import { Codec, type Descriptor, type FieldDesc } from '../../src/cri/codec.ts';
import { loadService } from '../../src/cri/proto.ts';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const descriptor = JSON.parse(readFileSync(`${repo}src/cri/descriptor.json`, 'utf8')) as Descriptor;
const codec = new Codec(descriptor);
// The options berth loaded its protos with before the descriptor, and the generated types still describe.
const OPTIONS = { keepCase: true, longs: Number, enums: String, defaults: true, arrays: true, objects: true, oneofs: true };
const reference = loadSync(['proto/runtime/v1/api.proto', 'proto/berth/v1/pins.proto', 'proto/berth/v1/node.proto', 'proto/berth/v1/peers.proto'].map((p) => repo + p), OPTIONS);

interface Ref {
  serialize(o: object): Buffer;
  deserialize(b: Buffer): object;
}

/** proto-loader's codec of one message type, taken from a method that carries it. */
function referenceType(name: string): Ref | undefined {
  for (const [svc, methods] of Object.entries(descriptor.services)) {
    const def = reference[svc] as Record<string, { requestSerialize(o: object): Buffer; requestDeserialize(b: Buffer): object; responseSerialize(o: object): Buffer; responseDeserialize(b: Buffer): object }>;
    for (const m of methods) {
      if (m.request === name) return { serialize: def[m.name]!.requestSerialize, deserialize: def[m.name]!.requestDeserialize };
      if (m.response === name) return { serialize: def[m.name]!.responseSerialize, deserialize: def[m.name]!.responseDeserialize };
    }
  }
  return undefined;
}

let seed = 1;
function scalar(type: string): unknown {
  seed++;
  switch (type) {
    case 'string':
      return `s${seed}-ü✓`;
    case 'bool':
      return true;
    case 'bytes':
      return Buffer.from([seed & 0xff, 0, 0xff]);
    case 'double':
      return seed + 0.5;
    case 'int32':
      return seed % 2 ? -seed : 2 ** 31 - seed;
    case 'uint32':
      return 2 ** 32 - seed;
    case 'int64':
      return seed % 2 ? -(2 ** 40) - seed : 2 ** 52 + seed;
    case 'uint64':
      return 2 ** 50 + seed;
    default: {
      const values = Object.keys(descriptor.enums[type] ?? {});
      return values[seed % values.length];
    }
  }
}

/** An object setting every field of `name`, nested `depth` levels deep. */
function sample(name: string, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of descriptor.messages[name] ?? []) {
    const one = (): unknown => (descriptor.messages[f.type] ? (depth > 0 ? sample(f.type, depth - 1) : {}) : scalar(f.type));
    if (f.key) out[f.name] = { [String(scalar(f.key))]: one(), '': one() };
    else if (f.repeated) out[f.name] = [one(), one()];
    else out[f.name] = one();
  }
  return out;
}

const messageTypes = (): string[] => {
  const names = new Set<string>();
  const add = (n: string): void => {
    if (names.has(n)) return;
    names.add(n);
    for (const f of descriptor.messages[n] as FieldDesc[]) if (descriptor.messages[f.type]) add(f.type);
  };
  for (const methods of Object.values(descriptor.services)) for (const m of methods) {
    add(m.request);
    add(m.response);
  }
  return [...names];
};

test('every message type decodes empty input to the same defaults as proto-loader', () => {
  const names = messageTypes();
  assert.ok(names.length > 100, `${names.length} message types reached from the services`);
  for (const name of names) {
    const ref = referenceType(name);
    if (!ref) continue;
    assert.deepEqual(codec.type(name).decode(Buffer.alloc(0)), ref.deserialize(Buffer.alloc(0)), name);
  }
});

test('each side decodes what the other encodes, for every request and response type', () => {
  let compared = 0;
  for (const methods of Object.values(descriptor.services)) {
    for (const m of methods) {
      for (const name of [m.request, m.response]) {
        const ref = referenceType(name) as Ref;
        const obj = sample(name, 3);
        const ours = codec.type(name);
        const expected = ref.deserialize(ref.serialize(obj));
        assert.deepEqual(ours.decode(ref.serialize(obj)), expected, `${name}: decoding proto-loader's encoding`);
        assert.deepEqual(ref.deserialize(ours.encode(obj)), expected, `${name}: proto-loader decoding ours`);
        compared++;
      }
    }
  }
  assert.ok(compared > 90, `${compared} types compared`);
});

test('a message with a nested type shows the nested defaults the handlers rely on', () => {
  const ref = referenceType('runtime.v1.ListImagesResponse') as Ref;
  const encoded = ref.serialize({ images: [{ id: 'sha256:x', size: 2 ** 40, spec: null }] });
  const decoded = codec.type('runtime.v1.ListImagesResponse').decode(encoded) as { images: Array<Record<string, unknown>> };
  assert.equal(decoded.images[0]?.id, 'sha256:x');
  assert.equal(decoded.images[0]?.size, 2 ** 40);
  assert.deepEqual(decoded.images[0]?.repo_tags, []);
  assert.equal(decoded.images[0]?.spec, null);
  assert.equal(decoded.images[0]?.pinned, false);
});

test('unknown fields are skipped; truncated or malformed input is refused', () => {
  const type = codec.type('runtime.v1.VersionRequest');
  // field 9 (varint 300), field 10 (bytes "ab"), then version = "v1"
  const withUnknown = Buffer.from([0x48, 0xac, 0x02, 0x52, 0x02, 0x61, 0x62, 0x0a, 0x02, 0x76, 0x31]);
  assert.deepEqual(type.decode(withUnknown), { version: 'v1' });
  assert.throws(() => type.decode(Buffer.from([0x0a, 0x05, 0x76])), /truncated/);
  assert.throws(() => type.decode(Buffer.from([0x08, 0x01])), /wire type 0/);
  assert.throws(() => type.decode(Buffer.from([0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])), /invalid varint/);
});

test('encoding names the field a bad value was given for', () => {
  assert.throws(() => codec.type('runtime.v1.PortMapping').encode({ protocol: 'TCPX' }), /runtime\.v1\.PortMapping\.protocol: "TCPX" is not a value/);
  assert.throws(() => codec.type('runtime.v1.ListImagesResponse').encode({ images: 'x' }), /ListImagesResponse\.images: array expected/);
  assert.throws(() => codec.type('runtime.v1.ImageStatusRequest').encode({ image: 'x' }), /ImageStatusRequest\.image: object expected/);
});

test('grpc-js definitions carry every method of the proto with its path and direction', () => {
  const image = loadService('runtime.v1.ImageService').service;
  assert.equal(image.PullImage?.path, '/runtime.v1.ImageService/PullImage');
  const runtime = loadService('runtime.v1.RuntimeService').service;
  assert.equal(runtime.GetContainerEvents?.responseStream, true);
  assert.equal(runtime.Version?.responseStream, false);
  const refRuntime = reference['runtime.v1.RuntimeService'] as Record<string, unknown>;
  assert.deepEqual(Object.keys(runtime).sort(), Object.keys(refRuntime).sort());
  assert.throws(() => loadService('runtime.v1.Nope'), /no service runtime\.v1\.Nope/);
});
