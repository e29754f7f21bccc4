// Validates manifests/ without a cluster: every built-in object against the Kubernetes schemas of
// kubernetes-models (rejecting fields the schema does not know, which those schemas let through),
// the CRDs against the apiserver's structural-schema rules, the sample custom resources against
// their CRD (ajv, plus the CRDs' CEL rules), and the RBAC rules against berth's lint (no `*`, no
// list/watch on secrets, no bind/escalate/impersonate). Also checks manifests/ is what
// hack/render-manifests.ts renders now. Usage: node hack/validate-manifests.ts [DIR]
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { Ajv, type AnySchemaObject } from 'ajv';
import { evaluate as celEvaluate } from '@marcbachmann/cel-js';
import { HEADER, MANIFESTS_DIR, render, toYaml } from './render-manifests.ts';

type Obj = Record<string, unknown>;
export interface Doc {
  file: string;
  obj: Obj;
}

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const where = (d: Doc): string => `${d.file}: ${str(d.obj.kind)}/${str((d.obj.metadata as Obj | undefined)?.name)}`;

export async function loadDocs(dir: string): Promise<Doc[]> {
  const out: Doc[] = [];
  for (const ent of (await readdir(dir, { recursive: true, withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    if (!ent.isFile() || !/\.ya?ml$/.test(ent.name)) continue;
    const path = join(ent.parentPath, ent.name);
    for (const doc of parseAllDocuments(await readFile(path, 'utf8'))) {
      if (doc.errors.length > 0) throw new Error(`${path}: ${doc.errors[0]?.message}`);
      const obj: unknown = doc.toJS();
      if (isObj(obj)) out.push({ file: relative(dir, path), obj });
    }
  }
  return out;
}

// ---- built-in kinds: kubernetes-models plus an unknown-field check -------------------------------

/**
 * Wraps `value` so that reading a key records it. The schemas' validators read exactly the keys
 * their schema declares (and every key of a map), so a key nobody read is one the schema lacks.
 */
function tracked(value: unknown, path: string, read: Map<string, Set<string>>): unknown {
  if (typeof value !== 'object' || value === null) return value;
  const seen = new Set<string>();
  read.set(path, seen);
  return new Proxy(value as object, {
    get(target, key, receiver) {
      const v: unknown = Reflect.get(target, key, receiver);
      if (typeof key !== 'string') return v;
      seen.add(key);
      return Object.hasOwn(target, key) ? tracked(v, `${path}/${key}`, read) : v;
    },
    has(target, key) {
      if (typeof key === 'string') seen.add(key);
      return Reflect.has(target, key);
    },
  });
}

/** JSONSchemaProps fields: a CRD schema's nodes are checked against these, not by tracking. */
const SCHEMA_KEYWORDS = new Set([
  '$schema', '$ref', 'id', 'description', 'type', 'format', 'title', 'default', 'maximum', 'exclusiveMaximum', 'minimum',
  'exclusiveMinimum', 'maxLength', 'minLength', 'pattern', 'maxItems', 'minItems', 'uniqueItems', 'multipleOf', 'enum',
  'maxProperties', 'minProperties', 'required', 'items', 'allOf', 'oneOf', 'anyOf', 'not', 'properties',
  'additionalProperties', 'patternProperties', 'dependencies', 'additionalItems', 'definitions', 'externalDocs', 'example',
  'nullable', 'x-kubernetes-preserve-unknown-fields', 'x-kubernetes-embedded-resource', 'x-kubernetes-int-or-string',
  'x-kubernetes-list-map-keys', 'x-kubernetes-list-type', 'x-kubernetes-map-type', 'x-kubernetes-validations',
]);

function unknownSchemaKeywords(schema: unknown, path: string, out: string[]): void {
  if (!isObj(schema)) return;
  for (const key of Object.keys(schema)) if (!SCHEMA_KEYWORDS.has(key)) out.push(`unknown field ${path}.${key}`);
  for (const [k, sub] of Object.entries(isObj(schema.properties) ? schema.properties : {})) unknownSchemaKeywords(sub, `${path}.properties.${k}`, out);
  for (const k of ['items', 'additionalProperties', 'not']) unknownSchemaKeywords(schema[k], `${path}.${k}`, out);
  for (const k of ['allOf', 'oneOf', 'anyOf']) if (Array.isArray(schema[k])) (schema[k] as unknown[]).forEach((s, i) => unknownSchemaKeywords(s, `${path}.${k}.${i}`, out));
}

function unknownFields(value: unknown, path: string, read: Map<string, Set<string>>, out: string[]): void {
  if (typeof value !== 'object' || value === null) return;
  // A CRD's schema is recursive JSON the kubernetes-models validator only skims.
  if (path.endsWith('/schema/openAPIV3Schema')) return unknownSchemaKeywords(value, path.replace(/^\//, '').replaceAll('/', '.'), out);
  const seen = read.get(path);
  for (const [key, v] of Object.entries(value)) {
    const sub = `${path}/${key}`;
    if (!seen?.has(key)) out.push(`unknown field ${sub.replace(/^\//, '').replaceAll('/', '.')}`);
    else unknownFields(v, sub, read, out);
  }
}

interface ModelClass {
  prototype: { validate(): void };
}

async function modelFor(apiVersion: string, kind: string): Promise<ModelClass | undefined> {
  try {
    const mod = (await import(`kubernetes-models/${apiVersion}/${kind}`)) as Record<string, ModelClass>;
    return mod[kind];
  } catch {
    return undefined;
  }
}

async function validateBuiltin(d: Doc): Promise<string[]> {
  const apiVersion = str(d.obj.apiVersion);
  const kind = str(d.obj.kind);
  const model = await modelFor(apiVersion, kind);
  if (!model) return [`${where(d)}: no schema for ${apiVersion} ${kind}`];
  const read = new Map<string, Set<string>>();
  const problems: string[] = [];
  try {
    model.prototype.validate.call(tracked(structuredClone(d.obj), '', read));
  } catch (err) {
    problems.push((err as Error).message.split('\n').join('; '));
  }
  const unknown: string[] = [];
  unknownFields(d.obj, '', read, unknown);
  return [...problems, ...unknown].map((p) => `${where(d)}: ${p}`);
}

// ---- CRDs: structural rules and sample objects ---------------------------------------------------

const VOID_KEYWORDS = ['x-kubernetes-list-type', 'x-kubernetes-list-map-keys', 'x-kubernetes-validations', 'x-kubernetes-preserve-unknown-fields', 'x-kubernetes-int-or-string', 'x-kubernetes-embedded-resource', 'x-kubernetes-map-type'];
const TYPES = ['object', 'array', 'string', 'integer', 'number', 'boolean'];

/** The apiserver's structural-schema rules, as far as berth's CRDs can break them. */
function structuralProblems(schema: Obj, path: string, out: string[], root = true): void {
  const preserve = schema['x-kubernetes-preserve-unknown-fields'] === true || schema['x-kubernetes-int-or-string'] === true;
  const type = schema.type;
  if (!preserve && (typeof type !== 'string' || !TYPES.includes(type))) out.push(`${path}: every schema node needs a type`);
  for (const k of ['$ref', 'definitions', 'dependencies', 'id', 'additionalItems', 'patternProperties', 'uniqueItems']) {
    if (k in schema) out.push(`${path}: ${k} is not allowed in a CRD schema`);
  }
  if ('properties' in schema && 'additionalProperties' in schema) out.push(`${path}: properties and additionalProperties are mutually exclusive`);
  if (schema.additionalProperties === false) out.push(`${path}: additionalProperties: false is not allowed (pruning already drops unknown fields)`);
  if (type !== 'object' && ('properties' in schema || 'additionalProperties' in schema)) out.push(`${path}: properties on a non-object`);
  if (type === 'array' && !isObj(schema.items)) out.push(`${path}: an array needs items`);
  if (Array.isArray(schema.enum) && !schema.enum.every((e) => typeof e === (type === 'integer' ? 'number' : type))) out.push(`${path}: enum values must be of the node's type`);
  if (root) {
    const props = schema.properties as Obj | undefined;
    const meta = props?.metadata as Obj | undefined;
    if (meta && Object.keys(meta).some((k) => k !== 'type')) out.push(`${path}.metadata: only type: object is allowed at the root's metadata`);
  }
  for (const [k, sub] of Object.entries((schema.properties as Obj | undefined) ?? {})) if (isObj(sub)) structuralProblems(sub, `${path}.${k}`, out, false);
  if (isObj(schema.items)) structuralProblems(schema.items, `${path}[]`, out, false);
  if (isObj(schema.additionalProperties)) structuralProblems(schema.additionalProperties, `${path}{}`, out, false);
}

/** A copy an ajv validator can enforce like the apiserver: unknown fields are errors, not pruned. */
export function strictCopy(schema: Obj): Obj {
  const out: Obj = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === 'properties' && isObj(v)) out[k] = Object.fromEntries(Object.entries(v).map(([p, s]) => [p, isObj(s) ? strictCopy(s) : s]));
    else if ((k === 'items' || k === 'additionalProperties') && isObj(v)) out[k] = strictCopy(v);
    else if (k !== 'default') out[k] = v;
  }
  if (schema.type === 'object' && isObj(schema.properties) && !('additionalProperties' in schema) && schema['x-kubernetes-preserve-unknown-fields'] !== true) {
    out.additionalProperties = false;
  }
  return out;
}

/** Evaluates a CRD's x-kubernetes-validations CEL rules over a sample object. */
function celProblems(schema: Obj, value: unknown, path: string, out: string[]): void {
  if (value === undefined) return;
  for (const rule of (schema['x-kubernetes-validations'] as { rule: string; message?: string }[] | undefined) ?? []) {
    let ok: unknown;
    try {
      ok = celEvaluate(rule.rule, { self: value });
    } catch (err) {
      out.push(`${path}: CEL rule ${rule.rule} failed to evaluate: ${(err as Error).message}`);
      continue;
    }
    if (ok !== true) out.push(`${path}: ${rule.message ?? rule.rule}`);
  }
  if (isObj(value)) {
    for (const [k, sub] of Object.entries((schema.properties as Obj | undefined) ?? {})) if (isObj(sub)) celProblems(sub, value[k], `${path}.${k}`, out);
  }
}

function crdSchema(crd: Obj): { group: string; kind: string; versions: Map<string, Obj> } {
  const spec = crd.spec as Obj;
  const names = spec.names as Obj;
  const versions = new Map<string, Obj>();
  for (const v of spec.versions as Obj[]) versions.set(str(v.name), ((v.schema as Obj).openAPIV3Schema as Obj) ?? {});
  return { group: str(spec.group), kind: str(names.kind), versions };
}

function crdProblems(d: Doc): string[] {
  const out: string[] = [];
  const spec = d.obj.spec as Obj;
  const plural = str((spec.names as Obj).plural);
  if (str((d.obj.metadata as Obj).name) !== `${plural}.${str(spec.group)}`) out.push('metadata.name must be <plural>.<group>');
  for (const v of spec.versions as Obj[]) {
    const schema = (v.schema as Obj | undefined)?.openAPIV3Schema;
    if (!isObj(schema)) {
      out.push(`version ${str(v.name)}: no openAPIV3Schema`);
      continue;
    }
    structuralProblems(schema, `${str(v.name)}`, out);
    for (const col of (v.additionalPrinterColumns as Obj[] | undefined) ?? []) {
      if (!str(col.jsonPath).startsWith('.')) out.push(`printer column ${str(col.name)}: jsonPath must start with .`);
    }
    // Defaults must satisfy their own schema, as the apiserver checks at CRD creation.
    const ajv = newAjv();
    const walk = (s: Obj, p: string): void => {
      if ('default' in s && !ajv.validate(strictCopy(s) as AnySchemaObject, s.default)) out.push(`${p}: default does not satisfy its schema: ${ajv.errorsText()}`);
      for (const [k, sub] of Object.entries((s.properties as Obj | undefined) ?? {})) if (isObj(sub)) walk(sub, `${p}.${k}`);
      if (isObj(s.items)) walk(s.items, `${p}[]`);
    };
    walk(schema, str(v.name));
  }
  return out.map((p) => `${where(d)}: ${p}`);
}

export function newAjv(): Ajv {
  const ajv = new Ajv({ allErrors: true, strict: true, validateFormats: false });
  for (const k of VOID_KEYWORDS) ajv.addKeyword({ keyword: k });
  return ajv;
}

function customResourceProblems(d: Doc, crds: ReturnType<typeof crdSchema>[]): string[] {
  const [group, version] = str(d.obj.apiVersion).split('/');
  const crd = crds.find((c) => c.group === group && c.kind === d.obj.kind);
  const schema = crd?.versions.get(version ?? '');
  if (!crd || !schema) return [`${where(d)}: no CRD serves ${str(d.obj.apiVersion)} ${str(d.obj.kind)}`];
  const ajv = newAjv();
  const out: string[] = [];
  if (!ajv.validate(strictCopy(schema) as AnySchemaObject, d.obj)) {
    for (const e of ajv.errors ?? []) out.push(`${e.instancePath || '/'} ${e.message ?? ''}${e.keyword === 'additionalProperties' ? ` (${str(e.params.additionalProperty)})` : ''}`);
  }
  celProblems(schema, d.obj, '', out);
  return out.map((p) => `${where(d)}: ${p}`);
}

// ---- RBAC lint -----------------------------------------------------------------------------------

const FORBIDDEN_VERBS = ['bind', 'escalate', 'impersonate'];

export function rbacProblems(d: Doc): string[] {
  if (d.obj.kind !== 'ClusterRole' && d.obj.kind !== 'Role') return [];
  const out: string[] = [];
  if ('aggregationRule' in d.obj) out.push('aggregationRule grants whatever other roles hold; list rules instead');
  (d.obj.rules as Obj[] | undefined ?? []).forEach((rule, i) => {
    for (const field of ['apiGroups', 'resources', 'verbs', 'resourceNames', 'nonResourceURLs']) {
      const list = (rule[field] as string[] | undefined) ?? [];
      if (list.some((x) => x.includes('*'))) out.push(`rules[${i}].${field}: wildcard`);
    }
    const verbs = (rule.verbs as string[] | undefined) ?? [];
    const resources = (rule.resources as string[] | undefined) ?? [];
    for (const v of verbs) if (FORBIDDEN_VERBS.includes(v)) out.push(`rules[${i}]: verb ${v} lets the holder gain rights it lacks`);
    const core = ((rule.apiGroups as string[] | undefined) ?? []).includes('');
    if (core && resources.includes('secrets') && verbs.some((v) => v === 'list' || v === 'watch')) out.push(`rules[${i}]: list/watch on secrets reads every secret; grant get by name only`);
  });
  return out.map((p) => `${where(d)}: ${p}`);
}

// ---- all together ----------------------------------------------------------------------------------

export async function validateDocs(docs: Doc[]): Promise<string[]> {
  const problems: string[] = [];
  const crds = docs.filter((d) => d.obj.kind === 'CustomResourceDefinition');
  const schemas = crds.map((d) => crdSchema(d.obj));
  const customGroups = new Set(schemas.map((s) => s.group));
  for (const d of docs) {
    const group = str(d.obj.apiVersion).split('/')[0] ?? '';
    if (str(d.obj.apiVersion).includes('/') && customGroups.has(group)) {
      problems.push(...customResourceProblems(d, schemas));
      continue;
    }
    problems.push(...(await validateBuiltin(d)));
    if (d.obj.kind === 'CustomResourceDefinition') problems.push(...crdProblems(d));
    problems.push(...rbacProblems(d));
  }
  return problems;
}

/** Files whose content differs from what the renderer produces with its defaults. */
export async function staleFiles(dir: string): Promise<string[]> {
  const stale: string[] = [];
  for (const [file, docs] of render()) {
    const want = HEADER + toYaml(docs);
    const have = await readFile(join(dir, file), 'utf8').catch(() => '');
    if (have !== want) stale.push(file);
  }
  return stale;
}

async function main(): Promise<number> {
  const dir = process.argv[2] ?? MANIFESTS_DIR;
  const problems = await validateDocs(await loadDocs(dir));
  if (dir === MANIFESTS_DIR) {
    for (const f of await staleFiles(dir)) problems.push(`manifests/${f} is not what hack/render-manifests.ts renders; run node hack/render-manifests.ts`);
  }
  for (const p of problems) process.stderr.write(`${p}\n`);
  process.stdout.write(problems.length === 0 ? 'manifests: valid\n' : `manifests: ${problems.length} problem(s)\n`);
  return problems.length === 0 ? 0 : 1;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.exitCode = await main();
