// Proves that the project's own CRI proto (proto/runtime/v1/api.proto) is wire-identical to the
// upstream reference vendored in proto/upstream/ (with its license): both files are loaded
// with protobufjs, every service, message, field and enum is reduced to a normalized description
// of what matters on the wire, and the two descriptions must be deep-equal. Comments, declaration
// order and non-wire options are ignored.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const PROJECT_PROTO = fileURLToPath(new URL('../../proto/runtime/v1/api.proto', import.meta.url));
// Vendored rather than pinned as a digest: when the two drift apart, the test can name the types
// that differ, and following an upstream release is replacing one file.
const REFERENCE_PROTO = fileURLToPath(new URL('../../proto/upstream/cri-api-v1.proto', import.meta.url));

interface FieldDesc {
  id: number;
  /** Scalar type name, or the fully-qualified name of a message/enum type. */
  type: string;
  rule: string | null;
  repeated: boolean;
  map: boolean;
  keyType: string | null;
  oneof: string | null;
  packed: boolean;
  delimited: boolean;
  hasPresence: boolean;
}

interface MethodDesc {
  requestType: string;
  responseType: string;
  requestStream: boolean;
  responseStream: boolean;
}

type Reserved = (number[] | string)[];

type TypeDesc =
  | { kind: 'namespace'; nested: string[] }
  | {
      kind: 'message';
      fields: Record<string, FieldDesc>;
      oneofs: Record<string, string[]>;
      nested: string[];
      reserved: Reserved;
      extensions: number[][];
    }
  | { kind: 'enum'; values: Record<string, number>; reserved: Reserved }
  | { kind: 'service'; methods: Record<string, MethodDesc>; nested: string[] };

/** Fully-qualified name -> description, for every namespace, message, enum and service. */
type ApiDesc = Record<string, TypeDesc>;

function loadFile(path: string): protobuf.Root {
  const root = new protobuf.Root().loadSync(path, { keepCase: true });
  root.resolveAll();
  return root;
}

function parseSource(source: string): protobuf.Root {
  const { root } = protobuf.parse(source, new protobuf.Root(), { keepCase: true });
  root.resolveAll();
  return root;
}

function nestedNames(ns: protobuf.NamespaceBase): string[] {
  return ns.nestedArray.map((n) => n.name).sort();
}

function sortedReserved(reserved: Reserved | undefined): Reserved {
  // Reserved ranges and names are sets; normalise their order.
  return [...(reserved ?? [])].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
}

function describeField(field: protobuf.Field): FieldDesc {
  field.resolve();
  const map = field instanceof protobuf.MapField;
  return {
    id: field.id,
    type: field.resolvedType ? field.resolvedType.fullName : field.type,
    rule: field.rule ?? null,
    repeated: field.repeated,
    map,
    keyType: map ? field.keyType : null,
    oneof: field.partOf ? field.partOf.name : null,
    packed: field.repeated ? field.packed : false,
    delimited: field.delimited,
    hasPresence: field.hasPresence,
  };
}

function describeMethod(method: protobuf.Method): MethodDesc {
  method.resolve();
  assert.ok(method.resolvedRequestType && method.resolvedResponseType, `unresolved types in ${method.fullName}`);
  return {
    requestType: method.resolvedRequestType.fullName,
    responseType: method.resolvedResponseType.fullName,
    requestStream: method.requestStream === true,
    responseStream: method.responseStream === true,
  };
}

function walk(obj: protobuf.ReflectionObject, out: ApiDesc): void {
  if (obj instanceof protobuf.Type) {
    const fields: Record<string, FieldDesc> = {};
    for (const f of obj.fieldsArray) fields[f.name] = describeField(f);
    const oneofs: Record<string, string[]> = {};
    for (const o of obj.oneofsArray) oneofs[o.name] = [...o.oneof].sort();
    out[obj.fullName] = {
      kind: 'message',
      fields,
      oneofs,
      nested: nestedNames(obj),
      reserved: sortedReserved(obj.reserved),
      extensions: obj.extensions ?? [],
    };
    for (const n of obj.nestedArray) walk(n, out);
  } else if (obj instanceof protobuf.Enum) {
    out[obj.fullName] = { kind: 'enum', values: { ...obj.values }, reserved: sortedReserved(obj.reserved) };
  } else if (obj instanceof protobuf.Service) {
    const methods: Record<string, MethodDesc> = {};
    for (const m of obj.methodsArray) methods[m.name] = describeMethod(m);
    out[obj.fullName] = { kind: 'service', methods, nested: nestedNames(obj) };
  } else if (obj instanceof protobuf.Namespace) {
    out[obj.fullName] = { kind: 'namespace', nested: nestedNames(obj) };
    for (const n of obj.nestedArray) walk(n, out);
  } else {
    // Top-level extension fields or anything else protobufjs may add: describe, never ignore.
    out[obj.fullName] = { kind: 'namespace', nested: [`unexpected ${obj.constructor.name}`] };
  }
}

/** Normalized, order-independent description of everything in `root` that affects the wire. */
function describeApi(root: protobuf.Root): ApiDesc {
  const out: ApiDesc = {};
  for (const n of root.nestedArray) walk(n, out);
  return out;
}

/** Fully-qualified names whose descriptions differ (or exist on one side only). */
function diffApi(a: ApiDesc, b: ApiDesc): string[] {
  const names = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...names].filter((n) => JSON.stringify(canonical(a[n])) !== JSON.stringify(canonical(b[n]))).sort();
}

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object') {
    return Object.fromEntries(
      Object.entries(v)
        .sort(([x], [y]) => x.localeCompare(y))
        .map(([k, val]) => [k, canonical(val)]),
    );
  }
  return v;
}

function requireReference(): string {
  assert.ok(existsSync(REFERENCE_PROTO), `upstream CRI reference proto not found at ${REFERENCE_PROTO}; it is part of the repo (proto/upstream/)`);
  return REFERENCE_PROTO;
}

function service(desc: ApiDesc, name: string): Extract<TypeDesc, { kind: 'service' }> {
  const s = desc[name];
  assert.ok(s && s.kind === 'service', `${name} is not a service`);
  return s;
}

void test('project CRI proto is wire-identical to the upstream reference', () => {
  const reference = describeApi(loadFile(requireReference()));
  const project = describeApi(loadFile(PROJECT_PROTO));

  // Sanity checks, so an empty or truncated load cannot make the comparison pass vacuously.
  for (const desc of [reference, project]) {
    assert.equal(desc['.runtime.v1']?.kind, 'namespace');
    const runtime = service(desc, '.runtime.v1.RuntimeService');
    assert.ok(Object.keys(runtime.methods).length > 20, 'RuntimeService should have > 20 methods');
    for (const m of ['Version', 'RunPodSandbox', 'CreateContainer', 'ExecSync', 'Status']) {
      assert.ok(runtime.methods[m], `RuntimeService.${m} missing`);
    }
    assert.equal(runtime.methods.GetContainerEvents?.responseStream, true);
    const image = service(desc, '.runtime.v1.ImageService');
    for (const m of ['ListImages', 'ImageStatus', 'PullImage', 'RemoveImage', 'ImageFsInfo']) {
      assert.ok(image.methods[m], `ImageService.${m} missing`);
    }
    const messages = Object.values(desc).filter((d) => d.kind === 'message');
    assert.ok(messages.length > 150, `expected > 150 messages, got ${messages.length}`);
    const enums = Object.values(desc).filter((d) => d.kind === 'enum');
    assert.ok(enums.length >= 10, `expected >= 10 enums, got ${enums.length}`);
  }

  assert.deepEqual(diffApi(project, reference), [], 'types that differ from the reference');
  assert.deepEqual(project, reference);
});

void test('the comparison detects wire-level edits to the project proto', () => {
  const source = readFileSync(PROJECT_PROTO, 'utf8');
  const baseline = describeApi(parseSource(source));
  assert.deepEqual(diffApi(baseline, describeApi(loadFile(PROJECT_PROTO))), [], 'parse() and loadSync() agree');

  const mutations: { what: string; from: RegExp; to: string; differs: string[] }[] = [
    {
      what: 'field number',
      from: /int32 container_port = 2;/,
      to: 'int32 container_port = 12;',
      differs: ['.runtime.v1.PortMapping'],
    },
    {
      what: 'field type',
      from: /int64 created_at = 4;/,
      to: 'uint64 created_at = 4;',
      differs: ['.runtime.v1.PodSandboxStatus'],
    },
    {
      what: 'field name',
      from: /string pod_sandbox_id = 1;\n}/,
      to: 'string sandbox_id = 1;\n}',
      differs: ['.runtime.v1.RunPodSandboxResponse'],
    },
    {
      what: 'repeated label',
      from: /repeated string servers = 1;/,
      to: 'string servers = 1;',
      differs: ['.runtime.v1.DNSConfig'],
    },
    {
      what: 'enum value number',
      from: /CONTAINER_EXITED = 2;/,
      to: 'CONTAINER_EXITED = 5;',
      differs: ['.runtime.v1.ContainerState'],
    },
    {
      what: 'streaming flag',
      from: /returns \(stream ContainerEventResponse\)/,
      to: 'returns (ContainerEventResponse)',
      differs: ['.runtime.v1.RuntimeService'],
    },
    {
      what: 'packed encoding',
      from: /repeated int32 port = 2;/,
      to: 'repeated int32 port = 2 [packed = false];',
      differs: ['.runtime.v1.PortForwardRequest'],
    },
  ];

  for (const m of mutations) {
    assert.match(source, m.from, `mutation "${m.what}" no longer applies to the project proto`);
    const mutated = describeApi(parseSource(source.replace(m.from, m.to)));
    assert.deepEqual(diffApi(mutated, baseline), m.differs, `mutation "${m.what}"`);
    assert.notDeepEqual(mutated, baseline, `mutation "${m.what}"`);
  }
});
