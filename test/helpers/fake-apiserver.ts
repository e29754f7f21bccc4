// An HTTP-level stand-in for kube-apiserver, for the controller tests (no apiserver runs here).
// It serves what berth's controller uses, with the real server's wire behaviour: list with
// limit/continue, watch with BOOKMARK events and timeoutSeconds, 410 Gone at watch start (after a
// compaction) and mid-stream, merge and JSON patches, status subresources with generation
// semantics, 409 on a stale resourceVersion. Every request needs a bearer token; RBAC rules and the
// ValidatingAdmissionPolicy are read from the rendered manifests/ and enforced (CEL through
// @marcbachmann/cel-js), so a request the real cluster would refuse gets 403 here too. Custom
// resources are checked against their CRD's schema (422). Faults: status codes (500, 429 +
// Retry-After) for the next N requests, dropped and stalled watch streams, and a full outage.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as celParse } from '@marcbachmann/cel-js';
import type { AnySchemaObject, ValidateFunction } from 'ajv';
import { loadDocs, newAjv, strictCopy } from '../../hack/validate-manifests.ts';
import { MANIFESTS_DIR } from '../../hack/render-manifests.ts';

type Obj = Record<string, unknown>;
interface Meta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  ownerReferences?: { uid: string }[];
}
type KObj = Obj & { metadata: Meta };

interface ResourceType {
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
  /** Has a status subresource: the main resource ignores status, /status ignores the rest. */
  statusSubresource: boolean;
  validate?: ValidateFunction;
}

export interface User {
  username: string;
  groups: string[];
  extra: Record<string, string[]>;
}

interface WatchEvent {
  rv: number;
  resource: string;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: KObj;
}

interface Watcher {
  resource: string;
  namespace?: string;
  name?: string;
  res: ServerResponse;
  send(ev: { type: string; object: Obj }): void;
  end(): void;
}

export interface Refusal {
  user: string;
  method: string;
  path: string;
  code: number;
  message: string;
}

class HttpError extends Error {
  readonly code: number;
  readonly reason: string;
  constructor(code: number, reason: string, message: string) {
    super(message);
    this.code = code;
    this.reason = reason;
  }
}

const BUILTIN: ResourceType[] = [
  { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false, statusSubresource: true },
  { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true, statusSubresource: true },
  { group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true, statusSubresource: false },
  { group: 'node.k8s.io', version: 'v1', plural: 'runtimeclasses', kind: 'RuntimeClass', namespaced: false, statusSubresource: false },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'rolebindings', kind: 'RoleBinding', namespaced: true, statusSubresource: false },
];

function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const out: Obj = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as Obj) } : {};
  for (const [k, v] of Object.entries(patch as Obj)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function jsonPatch(doc: unknown, ops: { op: string; path: string; value?: unknown; from?: string }[]): unknown {
  let root = structuredClone(doc);
  for (const op of ops) {
    const parts = op.path.split('/').slice(1).map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~'));
    const last = parts.pop();
    if (last === undefined) {
      if (op.op === 'replace' || op.op === 'add') root = op.value;
      continue;
    }
    let parent = root as Obj | unknown[];
    for (const p of parts) {
      parent = (Array.isArray(parent) ? parent[Number(p)] : parent[p]) as Obj | unknown[];
      if (typeof parent !== 'object' || parent === null) throw new HttpError(422, 'Invalid', `json patch: path ${op.path} does not exist`);
    }
    const exists = Array.isArray(parent) ? Number(last) < parent.length : last in parent;
    switch (op.op) {
      case 'test':
        if (JSON.stringify(Array.isArray(parent) ? parent[Number(last)] : parent[last]) !== JSON.stringify(op.value)) throw new HttpError(422, 'Invalid', `json patch test failed at ${op.path}`);
        break;
      case 'remove':
        if (!exists) throw new HttpError(422, 'Invalid', `json patch: nothing to remove at ${op.path}`);
        if (Array.isArray(parent)) parent.splice(Number(last), 1);
        else delete parent[last];
        break;
      case 'add':
      case 'replace':
        if (op.op === 'replace' && !exists) throw new HttpError(422, 'Invalid', `json patch: nothing to replace at ${op.path}`);
        if (Array.isArray(parent)) {
          if (last === '-') parent.push(op.value);
          else if (op.op === 'add') parent.splice(Number(last), 0, op.value);
          else parent[Number(last)] = op.value;
        } else parent[last] = op.value;
        break;
      default:
        throw new HttpError(422, 'Invalid', `json patch op ${op.op} is not supported here`);
    }
  }
  return root;
}

export interface FakeApiOptions {
  /** Period of BOOKMARK events on quiet watches (the real server: about a minute). */
  bookmarkMs?: number;
  /** Where the rendered manifests are (RBAC, admission policy, CRDs). */
  manifestsDir?: string;
}

export class FakeApiServer {
  readonly server: Server;
  url = '';
  /** Every 401/403/422 answered, for "zero 403s" checks and for debugging. */
  readonly refusals: Refusal[] = [];
  /** Successful writes by user and resource (`user verb resource[/sub]`). */
  readonly writes = new Map<string, number>();
  readonly requests = new Map<string, number>();
  /** Every successful write with its time and the object as stored (for benchmarks). */
  readonly writeLog: { at: number; user: string; verb: string; resource: string; name: string; object: KObj }[] = [];
  outage = false;
  stalled = false;
  #faults: { code: number; retryAfter?: number; count: number; match?: RegExp }[] = [];
  readonly #types = new Map<string, ResourceType>();
  readonly #objects = new Map<string, Map<string, KObj>>();
  readonly #log: WatchEvent[] = [];
  #rv = 100;
  #compactedRv = 0;
  readonly #watchers = new Set<Watcher>();
  readonly #tokens = new Map<string, User>();
  readonly #rbac: { roles: Map<string, Obj[]>; bindings: Obj[] } = { roles: new Map(), bindings: [] };
  readonly #policies: { spec: Obj; name: string }[] = [];
  readonly #sockets = new Set<Socket>();
  readonly #bookmarkMs: number;
  readonly #dir: Promise<string>;

  private constructor(opts: FakeApiOptions) {
    this.#bookmarkMs = opts.bookmarkMs ?? 1000;
    for (const t of BUILTIN) this.#types.set(t.plural, t);
    this.server = createServer((req, res) => void this.#handle(req, res));
    this.server.on('connection', (s) => {
      this.#sockets.add(s);
      s.once('close', () => this.#sockets.delete(s));
    });
    this.#dir = mkdtemp(join(tmpdir(), 'berth-fakeapi-'));
    this.#tokens.set('admin-token', { username: 'admin', groups: ['system:masters'], extra: {} });
  }

  static async start(opts: FakeApiOptions = {}): Promise<FakeApiServer> {
    const api = new FakeApiServer(opts);
    await api.#loadManifests(opts.manifestsDir ?? MANIFESTS_DIR);
    await new Promise<void>((resolve) => api.server.listen(0, '127.0.0.1', resolve));
    api.url = `http://127.0.0.1:${(api.server.address() as AddressInfo).port}`;
    return api;
  }

  async #loadManifests(dir: string): Promise<void> {
    for (const { obj } of await loadDocs(dir)) {
      const kind = obj.kind as string;
      const meta = obj.metadata as Meta;
      if (kind === 'CustomResourceDefinition') {
        const spec = obj.spec as Obj;
        const names = spec.names as Obj;
        const version = (spec.versions as Obj[])[0] as Obj;
        const schema = (version.schema as Obj).openAPIV3Schema as Obj;
        const plural = names.plural as string;
        const copy = strictCopy(schema);
        // Objects as stored carry server-set metadata; the schema's metadata is `type: object`.
        this.#types.set(plural, {
          group: spec.group as string,
          version: version.name as string,
          plural,
          kind: names.kind as string,
          namespaced: spec.scope === 'Namespaced',
          statusSubresource: Boolean((version.subresources as Obj | undefined)?.status),
          validate: newAjv().compile(copy as AnySchemaObject),
        });
      } else if (kind === 'ClusterRole') {
        this.#rbac.roles.set(`ClusterRole/${meta.name}`, (obj.rules as Obj[]) ?? []);
      } else if (kind === 'ClusterRoleBinding') {
        this.#rbac.bindings.push(obj);
      } else if (kind === 'ValidatingAdmissionPolicy') {
        this.#policies.push({ name: meta.name, spec: obj.spec as Obj });
      }
    }
    const bound = new Set<string>();
    for (const { obj } of await loadDocs(dir)) if (obj.kind === 'ValidatingAdmissionPolicyBinding') bound.add((obj.spec as Obj).policyName as string);
    for (let i = this.#policies.length - 1; i >= 0; i--) if (!bound.has(this.#policies[i]?.name ?? '')) this.#policies.splice(i, 1);
  }

  // ---- tokens and kubeconfigs -------------------------------------------------------------------

  /** A token of the node agent's service account, bound to `node` as a projected token would be. */
  nodeToken(node: string, namespace = 'berth-system'): string {
    const token = `node-${node}-${randomUUID()}`;
    this.#tokens.set(token, {
      username: `system:serviceaccount:${namespace}:berth-node`,
      groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`],
      extra: { 'authentication.kubernetes.io/node-name': [node] },
    });
    return token;
  }

  serviceAccountToken(name: string, namespace = 'berth-system'): string {
    const token = `sa-${name}-${randomUUID()}`;
    this.#tokens.set(token, { username: `system:serviceaccount:${namespace}:${name}`, groups: ['system:serviceaccounts'], extra: {} });
    return token;
  }

  async kubeconfig(token: string): Promise<string> {
    const file = join(await this.#dir, `${token}.kubeconfig`);
    const cfg = {
      apiVersion: 'v1',
      kind: 'Config',
      // client-node refuses plain HTTP unless TLS verification is off (there is no TLS to verify).
      clusters: [{ name: 'fake', cluster: { server: this.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'u', user: { token } }],
      contexts: [{ name: 'c', context: { cluster: 'fake', user: 'u' } }],
      'current-context': 'c',
    };
    await writeFile(file, JSON.stringify(cfg));
    return file;
  }

  // ---- faults -----------------------------------------------------------------------------------

  /** The next `count` non-admin requests (whose path matches, if given) get `code`. */
  failNext(count: number, code: number, retryAfter?: number, match?: RegExp): void {
    this.#faults.push({ code, retryAfter, count, match });
  }

  clearFaults(): void {
    this.#faults = [];
  }

  /** Ends every open watch abruptly (connection reset). */
  dropWatches(): void {
    for (const w of this.#watchers) w.res.socket?.destroy();
  }

  /** Sends 410 Gone in every open watch and ends it, as after an etcd compaction. */
  expireWatches(): void {
    this.compact();
    for (const w of [...this.#watchers]) {
      w.send({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410, message: 'too old resource version' } });
      w.end();
    }
  }

  /** Makes every resourceVersion seen so far too old: watches from them start with 410. */
  compact(): void {
    // The compaction itself takes a revision, so a list made after it can be watched from.
    this.#compactedRv = ++this.#rv;
  }

  /** An outage: connections are reset, open watches dropped, until setOutage(false). */
  setOutage(on: boolean): void {
    this.outage = on;
    if (on) for (const s of this.#sockets) s.destroy();
  }

  openWatches(): number {
    return this.#watchers.size;
  }

  // ---- direct access for the test driver (as an admin would, without HTTP) ----------------------

  get<T = KObj>(plural: string, name: string, namespace?: string): T | undefined {
    return this.#bucket(plural).get(this.#key(namespace, name)) as T | undefined;
  }

  list<T = KObj>(plural: string): T[] {
    return [...this.#bucket(plural).values()] as T[];
  }

  /** Creates or replaces (spec and metadata; status kept unless given) as an admin. */
  apply(obj: Obj): KObj {
    const type = this.#typeOfKind(obj.kind as string);
    const meta = obj.metadata as Meta;
    const existing = this.#bucket(type.plural).get(this.#key(meta.namespace, meta.name));
    if (!existing) return this.#create(type, structuredClone(obj) as KObj, true);
    const next = { ...structuredClone(obj), metadata: { ...existing.metadata, ...meta, resourceVersion: existing.metadata.resourceVersion } } as KObj;
    if (!('status' in obj) && 'status' in existing) next.status = existing.status;
    return this.#update(type, existing, next, false, true);
  }

  /** Sets an object's status as a kubelet or another controller would. */
  setStatus(plural: string, name: string, status: unknown, namespace?: string): KObj {
    const type = this.#type(plural);
    const existing = this.#mustGet(type, namespace, name);
    return this.#update(type, existing, { ...existing, status } as KObj, true, true);
  }

  remove(plural: string, name: string, namespace?: string): void {
    this.#delete(this.#type(plural), namespace, name);
  }

  async close(): Promise<void> {
    for (const w of this.#watchers) w.end();
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(await this.#dir, { recursive: true, force: true });
  }

  // ---- store ------------------------------------------------------------------------------------

  #type(plural: string): ResourceType {
    const t = this.#types.get(plural);
    if (!t) throw new HttpError(404, 'NotFound', `the server could not find the requested resource (${plural})`);
    return t;
  }

  #typeOfKind(kind: string): ResourceType {
    const t = [...this.#types.values()].find((x) => x.kind === kind);
    if (!t) throw new Error(`fake apiserver: unknown kind ${kind}`);
    return t;
  }

  #bucket(plural: string): Map<string, KObj> {
    let b = this.#objects.get(plural);
    if (!b) this.#objects.set(plural, (b = new Map()));
    return b;
  }

  #key(namespace: string | undefined, name: string): string {
    return namespace ? `${namespace}/${name}` : name;
  }

  #mustGet(type: ResourceType, namespace: string | undefined, name: string): KObj {
    const o = this.#bucket(type.plural).get(this.#key(namespace, name));
    if (!o) throw new HttpError(404, 'NotFound', `${type.plural}${type.group ? `.${type.group}` : ''} "${name}" not found`);
    return o;
  }

  #check(type: ResourceType, obj: KObj): void {
    if (!type.validate) return;
    const name = obj.metadata.name;
    if (!type.validate(obj)) {
      const e = type.validate.errors?.[0];
      throw new HttpError(422, 'Invalid', `${type.kind}.${type.group} "${name}" is invalid: ${e?.instancePath} ${e?.message} ${JSON.stringify(e?.params)}`);
    }
  }

  #emit(type: ResourceType, kind: WatchEvent['type'], object: KObj): void {
    const ev: WatchEvent = { rv: Number(object.metadata.resourceVersion), resource: type.plural, type: kind, object: structuredClone(object) };
    this.#log.push(ev);
    if (this.#log.length > 5000) this.#log.splice(0, this.#log.length - 5000);
    for (const w of this.#watchers) if (this.#wants(w, ev)) w.send({ type: ev.type, object: ev.object });
  }

  #wants(w: Watcher, ev: WatchEvent): boolean {
    return w.resource === ev.resource && (!w.namespace || w.namespace === ev.object.metadata.namespace) && (!w.name || w.name === ev.object.metadata.name);
  }

  #create(type: ResourceType, obj: KObj, admin: boolean): KObj {
    const meta = obj.metadata;
    if (!meta?.name) throw new HttpError(422, 'Invalid', 'metadata.name is required');
    const bucket = this.#bucket(type.plural);
    const key = this.#key(type.namespaced ? meta.namespace : undefined, meta.name);
    if (bucket.has(key)) throw new HttpError(409, 'AlreadyExists', `${type.plural}${type.group ? `.${type.group}` : ''} "${meta.name}" already exists`);
    if (type.statusSubresource && !admin) delete obj.status;
    obj.apiVersion = type.group ? `${type.group}/${type.version}` : type.version;
    obj.kind = type.kind;
    obj.metadata = { ...meta, uid: randomUUID(), resourceVersion: String(++this.#rv), generation: 1, creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z') };
    this.#check(type, obj);
    bucket.set(key, obj);
    this.#emit(type, 'ADDED', obj);
    return obj;
  }

  /** Stores `next` over `existing`: status-subresource and generation rules, rv check. */
  #update(type: ResourceType, existing: KObj, next: KObj, statusOnly: boolean, admin: boolean): KObj {
    const wantRv = next.metadata?.resourceVersion;
    if (wantRv && wantRv !== existing.metadata.resourceVersion) {
      throw new HttpError(409, 'Conflict', `Operation cannot be fulfilled on ${type.plural} "${existing.metadata.name}": the object has been modified; please apply your changes to the latest version and try again`);
    }
    let stored: KObj;
    if (type.statusSubresource && statusOnly) {
      stored = { ...structuredClone(existing), status: next.status } as KObj;
    } else if (type.statusSubresource && !admin) {
      stored = { ...structuredClone(next), status: existing.status } as KObj;
      if (existing.status === undefined) delete stored.status;
    } else {
      stored = structuredClone(next);
    }
    stored.metadata = {
      ...stored.metadata,
      name: existing.metadata.name,
      namespace: existing.metadata.namespace,
      uid: existing.metadata.uid,
      creationTimestamp: existing.metadata.creationTimestamp,
      generation: existing.metadata.generation,
    };
    if (JSON.stringify({ ...stored, metadata: { ...stored.metadata, resourceVersion: '' } }) === JSON.stringify({ ...existing, metadata: { ...existing.metadata, resourceVersion: '' } })) {
      return existing; // a no-op write changes nothing, not even the resourceVersion
    }
    if (JSON.stringify(stored.spec) !== JSON.stringify(existing.spec)) stored.metadata.generation = (existing.metadata.generation ?? 1) + 1;
    stored.metadata.resourceVersion = String(++this.#rv);
    this.#check(type, stored);
    this.#bucket(type.plural).set(this.#key(existing.metadata.namespace, existing.metadata.name), stored);
    this.#emit(type, 'MODIFIED', stored);
    return stored;
  }

  #delete(type: ResourceType, namespace: string | undefined, name: string): KObj {
    const obj = this.#mustGet(type, namespace, name);
    this.#bucket(type.plural).delete(this.#key(namespace, name));
    const gone = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(++this.#rv) } } as KObj;
    this.#emit(type, 'DELETED', gone);
    // The garbage collector: dependents owned by the deleted object go too.
    for (const t of this.#types.values()) {
      for (const dep of [...this.#bucket(t.plural).values()]) {
        if (dep.metadata.ownerReferences?.some((r) => r.uid === obj.metadata.uid)) this.#delete(t, dep.metadata.namespace, dep.metadata.name);
      }
    }
    return gone;
  }

  // ---- authorization and admission --------------------------------------------------------------

  #allowed(user: User, verb: string, type: ResourceType, sub: string, namespace: string | undefined, name: string | undefined): boolean {
    if (user.groups.includes('system:masters')) return true;
    const resource = sub ? `${type.plural}/${sub}` : type.plural;
    const sa = /^system:serviceaccount:([^:]+):(.+)$/.exec(user.username);
    const subjectMatches = (s: Obj): boolean =>
      (s.kind === 'ServiceAccount' && sa !== null && s.namespace === sa[1] && s.name === sa[2]) || (s.kind === 'User' && s.name === user.username) || (s.kind === 'Group' && user.groups.includes(s.name as string));
    const rulesOf = (ref: Obj, ns?: string): Obj[] => (ref.kind === 'ClusterRole' ? this.#rbac.roles.get(`ClusterRole/${ref.name as string}`) : this.#rbac.roles.get(`Role/${ns}/${ref.name as string}`)) ?? [];
    const rules: Obj[] = [];
    for (const b of this.#rbac.bindings) if (((b.subjects as Obj[]) ?? []).some(subjectMatches)) rules.push(...rulesOf(b.roleRef as Obj));
    if (namespace) {
      for (const rb of this.#bucket('rolebindings').values()) {
        if (rb.metadata.namespace === namespace && ((rb.subjects as Obj[]) ?? []).some(subjectMatches)) rules.push(...rulesOf(rb.roleRef as Obj, namespace));
      }
    }
    const has = (list: unknown, v: string): boolean => Array.isArray(list) && (list.includes(v) || list.includes('*'));
    return rules.some(
      (r) => has(r.apiGroups, type.group) && has(r.resources, resource) && has(r.verbs, verb) && (!Array.isArray(r.resourceNames) || r.resourceNames.length === 0 || (name !== undefined && r.resourceNames.includes(name))),
    );
  }

  /** Runs the manifests' ValidatingAdmissionPolicies; throws 403 on a denial. */
  #admit(user: User, operation: 'CREATE' | 'UPDATE', type: ResourceType, sub: string, object: KObj, oldObject: KObj | null): void {
    const resource = sub ? `${type.plural}/${sub}` : type.plural;
    for (const p of this.#policies) {
      const rules = ((p.spec.matchConstraints as Obj).resourceRules as Obj[]) ?? [];
      const hit = rules.some((r) => (r.apiGroups as string[]).some((g) => g === '*' || g === type.group) && (r.resources as string[]).some((x) => x === '*' || x === resource) && (r.operations as string[]).some((o) => o === '*' || o === operation));
      if (!hit) continue;
      const request = { userInfo: { username: user.username, groups: user.groups, extra: user.extra }, operation, resource: { group: type.group, version: type.version, resource: type.plural }, subResource: sub, name: object.metadata.name, namespace: object.metadata.namespace ?? '' };
      const ctx: Obj = { request, object, oldObject, variables: {} };
      const run = (expr: string): unknown => celParse(expr)(ctx);
      if (!((p.spec.matchConditions as Obj[] | undefined) ?? []).every((c) => run(c.expression as string) === true)) continue;
      const variables: Obj = {};
      ctx.variables = variables;
      for (const v of (p.spec.variables as Obj[] | undefined) ?? []) variables[v.name as string] = run(v.expression as string);
      for (const v of (p.spec.validations as Obj[] | undefined) ?? []) {
        if (run(v.expression as string) === true) continue;
        const message = v.messageExpression ? String(run(v.messageExpression as string)) : ((v.message as string | undefined) ?? `failed expression: ${v.expression as string}`);
        throw new HttpError(403, 'Forbidden', `${type.plural} "${object.metadata.name}" is forbidden: ValidatingAdmissionPolicy '${p.name}' denied request: ${message}`);
      }
    }
  }

  // ---- HTTP -------------------------------------------------------------------------------------

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.outage) {
      req.socket.destroy();
      return;
    }
    const url = new URL(req.url ?? '/', 'http://x');
    let user: User | undefined;
    try {
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      user = token ? this.#tokens.get(token) : undefined;
      if (!user) throw new HttpError(401, 'Unauthorized', 'Unauthorized');
      this.requests.set(user.username, (this.requests.get(user.username) ?? 0) + 1);
      if (!user.groups.includes('system:masters')) {
        const fault = this.#faults.find((f) => f.count > 0 && (!f.match || f.match.test(url.pathname)));
        if (fault) {
          fault.count--;
          if (fault.retryAfter !== undefined) res.setHeader('retry-after', String(fault.retryAfter));
          throw new HttpError(fault.code, fault.code === 429 ? 'TooManyRequests' : 'InternalError', `injected fault ${fault.code}`);
        }
      }
      const m = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+))?(?:\/([^/]+))?$/.exec(url.pathname);
      if (!m) throw new HttpError(404, 'NotFound', `no route ${url.pathname}`);
      const [, , group = '', , namespace, plural = '', name, sub = ''] = m;
      const type = this.#type(plural);
      if (type.group !== group) throw new HttpError(404, 'NotFound', `no ${plural} in group ${group}`);
      const body = await readBody(req);
      const watch = url.searchParams.get('watch') === '1' || url.searchParams.get('watch') === 'true';
      const verb = { GET: name ? 'get' : watch ? 'watch' : 'list', POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' }[req.method ?? 'GET'] ?? 'unknown';
      if (!this.#allowed(user, verb, type, sub, namespace, name)) {
        throw new HttpError(403, 'Forbidden', `${plural}${group ? `.${group}` : ''}${name ? ` "${name}"` : ''} is forbidden: User "${user.username}" cannot ${verb} resource "${plural}${sub ? `/${sub}` : ''}" in API group "${group}"${namespace ? ` in the namespace "${namespace}"` : ' at the cluster scope'}`);
      }
      const result = this.#serve(user, verb, type, namespace, name, sub, url, body, req, res);
      if (result === undefined) return; // a watch: the response stays open
      if (verb !== 'get' && verb !== 'list') {
        const k = `${user.username} ${verb} ${plural}${sub ? `/${sub}` : ''}`;
        this.writes.set(k, (this.writes.get(k) ?? 0) + 1);
        this.writeLog.push({ at: Date.now(), user: user.username, verb, resource: `${plural}${sub ? `/${sub}` : ''}`, name: name ?? '', object: result as KObj });
      }
      res.writeHead(verb === 'create' ? 201 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(result));
    } catch (err) {
      const e = err instanceof HttpError ? err : new HttpError(500, 'InternalError', (err as Error).message);
      if (e.code === 401 || e.code === 403 || e.code === 422) this.refusals.push({ user: user?.username ?? '', method: req.method ?? '', path: url.pathname, code: e.code, message: e.message });
      if (!res.headersSent) res.writeHead(e.code, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: e.reason, message: e.message, code: e.code }));
    }
  }

  #serve(user: User, verb: string, type: ResourceType, namespace: string | undefined, name: string | undefined, sub: string, url: URL, body: string, req: IncomingMessage, res: ServerResponse): unknown {
    const ns = type.namespaced ? namespace : undefined;
    switch (verb) {
      case 'get':
        return this.#mustGet(type, ns, name ?? '');
      case 'list':
        return this.#list(type, ns, url);
      case 'watch':
        this.#watch(type, ns, url, res);
        return undefined;
      case 'create': {
        const obj = JSON.parse(body) as KObj;
        if (type.namespaced) obj.metadata = { ...obj.metadata, namespace: ns ?? obj.metadata?.namespace };
        this.#admit(user, 'CREATE', type, '', obj, null);
        return this.#create(type, obj, false);
      }
      case 'update':
      case 'patch': {
        const existing = this.#mustGet(type, ns, name ?? '');
        let next: KObj;
        if (verb === 'update') next = JSON.parse(body) as KObj;
        else {
          const ct = (req.headers['content-type'] ?? '').split(';')[0];
          if (ct === 'application/merge-patch+json') next = mergePatch(existing, JSON.parse(body)) as KObj;
          else if (ct === 'application/json-patch+json') next = jsonPatch(existing, JSON.parse(body) as { op: string; path: string }[]) as KObj;
          else throw new HttpError(415, 'UnsupportedMediaType', `the fake apiserver does not take patch type ${ct}`);
        }
        this.#admit(user, 'UPDATE', type, sub, next, existing);
        return this.#update(type, existing, next, sub === 'status', false);
      }
      case 'delete':
        return this.#delete(type, ns, name ?? '');
      default:
        throw new HttpError(405, 'MethodNotAllowed', `${verb} is not supported`);
    }
  }

  #filtered(type: ResourceType, ns: string | undefined, url: URL): KObj[] {
    const field = url.searchParams.get('fieldSelector');
    const name = field ? /^metadata\.name=(.+)$/.exec(field)?.[1] : undefined;
    // The one other field selector the real server has that the agent uses: pods by node.
    const nodeName = field && type.plural === 'pods' ? /^spec\.nodeName=(.+)$/.exec(field)?.[1] : undefined;
    if (field && name === undefined && nodeName === undefined) throw new HttpError(400, 'BadRequest', `field selector ${field} is not supported here`);
    return [...this.#bucket(type.plural).entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([, o]) => o)
      .filter((o) => (!ns || o.metadata.namespace === ns) && (name === undefined || o.metadata.name === name))
      .filter((o) => nodeName === undefined || (o as { spec?: { nodeName?: string } }).spec?.nodeName === nodeName);
  }

  #list(type: ResourceType, ns: string | undefined, url: URL): unknown {
    const limit = Number(url.searchParams.get('limit') ?? 0);
    const cont = url.searchParams.get('continue');
    let after = '';
    let rv = String(this.#rv);
    if (cont) {
      const token = JSON.parse(Buffer.from(cont, 'base64url').toString()) as { rv: string; after: string };
      if (Number(token.rv) < this.#compactedRv) throw new HttpError(410, 'Expired', 'The provided continue parameter is too old');
      after = token.after;
      rv = token.rv;
    }
    const all = this.#filtered(type, ns, url).filter((o) => this.#key(o.metadata.namespace, o.metadata.name) > after);
    const page = limit > 0 ? all.slice(0, limit) : all;
    const more = limit > 0 && all.length > limit;
    const last = page[page.length - 1];
    const metadata: Obj = { resourceVersion: rv };
    if (more && last) metadata.continue = Buffer.from(JSON.stringify({ rv, after: this.#key(last.metadata.namespace, last.metadata.name) })).toString('base64url');
    return { kind: `${type.kind}List`, apiVersion: type.group ? `${type.group}/${type.version}` : type.version, metadata, items: page };
  }

  #watch(type: ResourceType, ns: string | undefined, url: URL, res: ServerResponse): void {
    const fromRv = Number(url.searchParams.get('resourceVersion') || this.#rv);
    if (fromRv < this.#compactedRv) throw new HttpError(410, 'Expired', `too old resource version: ${fromRv} (${this.#compactedRv})`);
    const field = url.searchParams.get('fieldSelector');
    const name = field ? /^metadata\.name=(.+)$/.exec(field)?.[1] : undefined;
    const bookmarks = url.searchParams.get('allowWatchBookmarks') === 'true';
    const timeoutSeconds = Number(url.searchParams.get('timeoutSeconds') ?? 1800);
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const timers: NodeJS.Timeout[] = [];
    const w: Watcher = {
      resource: type.plural,
      namespace: ns,
      name,
      res,
      send: (ev) => {
        if (!this.stalled && !res.writableEnded) res.write(`${JSON.stringify(ev)}\n`);
      },
      end: () => {
        for (const t of timers) clearTimeout(t);
        this.#watchers.delete(w);
        if (!res.writableEnded) res.end();
      },
    };
    this.#watchers.add(w);
    res.once('close', () => w.end());
    for (const ev of this.#log) if (ev.rv > fromRv && this.#wants(w, ev)) w.send({ type: ev.type, object: ev.object });
    timers.push(setTimeout(() => w.end(), timeoutSeconds * 1000));
    if (bookmarks) {
      const tick = (): void => {
        w.send({ type: 'BOOKMARK', object: { kind: type.kind, apiVersion: type.group ? `${type.group}/${type.version}` : type.version, metadata: { resourceVersion: String(this.#rv), annotations: { 'k8s.io/initial-events-end': 'false' } } } });
        timers.push(setTimeout(tick, this.#bookmarkMs));
      };
      timers.push(setTimeout(tick, this.#bookmarkMs));
    }
  }
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
