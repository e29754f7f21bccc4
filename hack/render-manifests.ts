// Renders manifests/ from one description: the namespace, berth.io CRDs, RBAC, the admission
// policy, the DaemonSet (installer + node agent), the aggregator, RuntimeClasses and the uninstall
// DaemonSet. Usage: node hack/render-manifests.ts [--image REF] [--version V] [--namespace NS]
//                   [--p2p] [--p2p-port N] [--out DIR]
// The files in manifests/ are this script's output with its defaults; hack/validate-manifests.ts
// checks that they are up to date.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import {
  API_VERSION,
  GROUP,
  IMAGE_REFERENCE_PATTERN,
  IMAGE_STATES,
  LABEL_RUNTIME,
  LABEL_HANDLER_PREFIX,
  NODE_NAME_CLAIM,
  TAINT_SWITCHING,
  PREFETCH_BOUNDS as B,
  PREFETCH_DEFAULTS as D,
  VERSION,
} from '../src/controller/api.ts';
import { BERTH_VERSION } from '../src/version.ts';

export interface RenderOptions {
  image: string;
  version: string;
  namespace: string;
  p2p: { enabled: boolean; port: number };
}

export const DEFAULTS: RenderOptions = {
  image: `localhost:5000/berth/berth:${BERTH_VERSION}`,
  version: BERTH_VERSION,
  namespace: 'berth-system',
  p2p: { enabled: false, port: 5050 },
};

type Obj = Record<string, unknown>;

const APP = 'app.kubernetes.io/name';
/** Port of the agent's health endpoints (liveness never asks the API; readiness asks berthd). */
export const HEALTH_PORT = 9741;

const dns1123Subdomain = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';

function conditionsSchema(): Obj {
  return {
    type: 'array',
    maxItems: 16,
    'x-kubernetes-list-type': 'map',
    'x-kubernetes-list-map-keys': ['type'],
    items: {
      type: 'object',
      required: ['type', 'status', 'reason', 'lastTransitionTime'],
      properties: {
        type: { type: 'string', maxLength: 316, pattern: '^[A-Za-z][A-Za-z0-9]*$' },
        status: { type: 'string', enum: ['True', 'False', 'Unknown'] },
        reason: { type: 'string', maxLength: 1024, pattern: '^([A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?)?$' },
        message: { type: 'string', maxLength: 32768 },
        lastTransitionTime: { type: 'string', format: 'date-time' },
        observedGeneration: { type: 'integer', format: 'int64', minimum: 0 },
      },
    },
  };
}

const seconds = (b: { min: number; max: number }, dflt: number, description: string): Obj => ({
  type: 'integer',
  minimum: b.min,
  maximum: b.max,
  default: dflt,
  description,
});

function imagePrefetchCrd(): Obj {
  const spec = {
    type: 'object',
    required: ['images'],
    properties: {
      images: {
        type: 'array',
        minItems: B.images.min,
        maxItems: B.images.max,
        'x-kubernetes-list-type': 'set',
        description: 'Image references to pull on every matching node (tags or digests).',
        items: { type: 'string', maxLength: 512, pattern: IMAGE_REFERENCE_PATTERN },
      },
      nodeSelector: {
        type: 'object',
        maxProperties: 32,
        description: 'Node labels a node must carry; empty or absent selects every berth node.',
        additionalProperties: { type: 'string', maxLength: 63 },
      },
      pullSecrets: {
        type: 'array',
        maxItems: B.pullSecrets.max,
        description: 'kubernetes.io/dockerconfigjson Secrets in this namespace; read by name at each pull, never cached.',
        items: {
          type: 'object',
          required: ['name'],
          properties: { name: { type: 'string', minLength: 1, maxLength: 253, pattern: dns1123Subdomain } },
        },
      },
      pin: { type: 'boolean', default: D.pin, description: 'Pin the images so kubelet image GC keeps them.' },
      refreshSeconds: seconds(B.refreshSeconds, D.refreshSeconds, 'How often tags are checked for a moved digest.'),
      maxConcurrentPulls: seconds(B.maxConcurrentPulls, D.maxConcurrentPulls, 'Pulls of this prefetch running at once on one node.'),
      startJitterSeconds: seconds(B.startJitterSeconds, D.startJitterSeconds, 'Random delay before a node starts, to spread registry load.'),
      backoff: {
        type: 'object',
        default: { ...D.backoff },
        properties: {
          initialSeconds: seconds(B.backoffSeconds, D.backoff.initialSeconds, 'First retry delay after a failed pull.'),
          maxSeconds: seconds(B.backoffSeconds, D.backoff.maxSeconds, 'Longest retry delay.'),
        },
        'x-kubernetes-validations': [{ rule: 'self.initialSeconds <= self.maxSeconds', message: 'backoff.initialSeconds must not exceed backoff.maxSeconds' }],
      },
      timeoutSeconds: seconds(B.timeoutSeconds, D.timeoutSeconds, 'Deadline of one PullImage call.'),
    },
  };
  const status = {
    type: 'object',
    properties: {
      observedGeneration: { type: 'integer', format: 'int64', minimum: 0 },
      matched: { type: 'integer', minimum: 0 },
      ready: { type: 'integer', minimum: 0 },
      failed: { type: 'integer', minimum: 0 },
      conditions: conditionsSchema(),
      failures: {
        type: 'array',
        maxItems: B.failuresListed,
        items: {
          type: 'object',
          required: ['node', 'image', 'reason'],
          properties: {
            node: { type: 'string', maxLength: 253 },
            image: { type: 'string', maxLength: 512 },
            reason: { type: 'string', maxLength: 128 },
            message: { type: 'string', maxLength: 1024 },
          },
        },
      },
    },
  };
  return crd('imageprefetches', 'ImagePrefetch', 'Namespaced', ['ipf'], { spec, status }, [
    { name: 'Matched', type: 'integer', jsonPath: '.status.matched' },
    { name: 'Ready', type: 'integer', jsonPath: '.status.ready' },
    { name: 'Failed', type: 'integer', jsonPath: '.status.failed' },
    { name: 'Status', type: 'string', jsonPath: ".status.conditions[?(@.type=='Ready')].reason" },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  ]);
}

function berthNodeCrd(): Obj {
  const image = {
    type: 'object',
    required: ['image', 'state', 'attempts'],
    properties: {
      image: { type: 'string', maxLength: 512 },
      digest: { type: 'string', maxLength: 71, pattern: '^sha256:[a-f0-9]{64}$' },
      state: { type: 'string', enum: [...IMAGE_STATES] },
      attempts: { type: 'integer', minimum: 0 },
      reason: { type: 'string', maxLength: 128 },
      lastError: { type: 'string', maxLength: 1024 },
      nextRetryAt: { type: 'string', format: 'date-time' },
    },
  };
  const status = {
    type: 'object',
    properties: {
      runtimeReady: { type: 'boolean' },
      version: { type: 'string', maxLength: 64 },
      handlers: { type: 'array', maxItems: 16, items: { type: 'string', maxLength: 63 } },
      conditions: conditionsSchema(),
      prefetches: {
        type: 'array',
        maxItems: 256,
        items: {
          type: 'object',
          required: ['namespace', 'name', 'uid', 'observedGeneration', 'images'],
          properties: {
            namespace: { type: 'string', maxLength: 63 },
            name: { type: 'string', maxLength: 253 },
            uid: { type: 'string', maxLength: 36 },
            observedGeneration: { type: 'integer', format: 'int64', minimum: 0 },
            conditions: conditionsSchema(),
            images: { type: 'array', maxItems: B.images.max, items: image },
          },
        },
      },
    },
  };
  return crd('berthnodes', 'BerthNode', 'Cluster', ['bn'], { spec: { type: 'object', maxProperties: 0 }, status }, [
    { name: 'Runtime', type: 'boolean', jsonPath: '.status.runtimeReady' },
    { name: 'Version', type: 'string', jsonPath: '.status.version' },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  ]);
}

function crd(plural: string, kind: string, scope: string, shortNames: string[], parts: { spec: Obj; status: Obj }, columns: Obj[]): Obj {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${GROUP}` },
    spec: {
      group: GROUP,
      scope,
      names: { plural, singular: kind.toLowerCase(), kind, listKind: `${kind}List`, shortNames, categories: ['berth'] },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: columns,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: parts.spec,
                status: parts.status,
              },
            },
          },
        },
      ],
    },
  };
}

function rbac(ns: string): Obj[] {
  const sa = (name: string): Obj => ({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: ns } });
  const binding = (name: string): Obj => ({
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
    subjects: [{ kind: 'ServiceAccount', name, namespace: ns }],
  });
  const role = (name: string, rules: Obj[]): Obj => ({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name }, rules });
  return [
    sa('berth-node'),
    role('berth-node', [
      { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch', 'patch'] },
      // The kubelet switch checks the node is drained (pods listed by spec.nodeName).
      { apiGroups: [''], resources: ['pods'], verbs: ['list'] },
      { apiGroups: [GROUP], resources: ['berthnodes', 'berthnodes/status'], verbs: ['get', 'create', 'patch'] },
      { apiGroups: [GROUP], resources: ['imageprefetches'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['node.k8s.io'], resources: ['runtimeclasses'], verbs: ['get', 'list', 'watch'] },
    ]),
    binding('berth-node'),
    sa('berth-aggregator'),
    role('berth-aggregator', [
      { apiGroups: [GROUP], resources: ['berthnodes'], verbs: ['list', 'watch'] },
      { apiGroups: [GROUP], resources: ['imageprefetches'], verbs: ['list', 'watch'] },
      { apiGroups: [GROUP], resources: ['imageprefetches/status'], verbs: ['patch'] },
    ]),
    binding('berth-aggregator'),
    // Not bound: an admin binds it with a RoleBinding in each namespace whose pull secrets the
    // agents may read (docs/cluster.md). get only: the agent fetches a secret by name per pull.
    role('berth-pull-secret-reader', [{ apiGroups: [''], resources: ['secrets'], verbs: ['get'] }]),
  ];
}

/**
 * The node agent may change only its own Node and BerthNode (the node named in its token), and on
 * the Node only berth.io/ labels and the kubelet switch's taint. Written in plain CEL (no optional syntax) so it runs on every
 * apiserver that has admissionregistration.k8s.io/v1 (1.30+).
 */
function admissionPolicy(ns: string): Obj[] {
  const user = `system:serviceaccount:${ns}:berth-node`;
  const nonBerth = (m: string): string => `${m}.filter(k, !k.startsWith('berth.io/'))`;
  const labels = (o: string): string => `(has(${o}.metadata.labels) ? ${o}.metadata.labels : {})`;
  const taints = (o: string): string => `(has(${o}.spec.taints) ? ${o}.spec.taints : [])`;
  const switching = (o: string, op: '==' | '!='): string => `${taints(o)}.filter(t, t.key ${op} '${TAINT_SWITCHING}')`;
  return [
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicy',
      metadata: { name: 'berth-node-scope' },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: {
          resourceRules: [
            { apiGroups: [''], apiVersions: ['v1'], operations: ['UPDATE'], resources: ['nodes'] },
            { apiGroups: [GROUP], apiVersions: ['*'], operations: ['CREATE', 'UPDATE'], resources: ['berthnodes', 'berthnodes/status'] },
          ],
        },
        matchConditions: [{ name: 'is-berth-node-agent', expression: `request.userInfo.username == '${user}'` }],
        variables: [
          {
            name: 'tokenNode',
            expression: `has(request.userInfo.extra) && '${NODE_NAME_CLAIM}' in request.userInfo.extra && size(request.userInfo.extra['${NODE_NAME_CLAIM}']) == 1 ? request.userInfo.extra['${NODE_NAME_CLAIM}'][0] : ''`,
          },
        ],
        validations: [
          {
            expression: "variables.tokenNode != ''",
            message: `the berth-node token carries no ${NODE_NAME_CLAIM} claim; use a projected token bound to the pod (Kubernetes 1.30+)`,
            reason: 'Forbidden',
          },
          {
            expression: 'object.metadata.name == variables.tokenNode',
            messageExpression: "'berth-node on ' + variables.tokenNode + ' may change only its own Node and BerthNode, not ' + object.metadata.name",
            reason: 'Forbidden',
          },
          {
            expression:
              `request.resource.resource != 'nodes' || (` +
              `${nonBerth(labels('object'))}.all(k, k in ${labels('oldObject')} && ${labels('oldObject')}[k] == ${labels('object')}[k]) && ` +
              `${nonBerth(labels('oldObject'))}.all(k, k in ${labels('object')}) && ` +
              // spec: only the switch's own taint may come and go (NoSchedule, no value).
              `object.spec.all(k, k == 'taints' || (k in oldObject.spec && oldObject.spec[k] == object.spec[k])) && ` +
              `oldObject.spec.all(k, k == 'taints' || k in object.spec) && ` +
              `${switching('object', '!=')} == ${switching('oldObject', '!=')} && ` +
              `size(${switching('object', '==')}) <= 1 && ` +
              `${switching('object', '==')}.all(t, t.effect == 'NoSchedule' && !has(t.value)) && ` +
              `(has(object.metadata.annotations) ? object.metadata.annotations : {}) == (has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {}))`,
            message: `berth-node may change only berth.io/ labels and the ${TAINT_SWITCHING}:NoSchedule taint on its Node`,
            reason: 'Forbidden',
          },
        ],
      },
    },
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicyBinding',
      metadata: { name: 'berth-node-scope' },
      spec: { policyName: 'berth-node-scope', validationActions: ['Deny'] },
    },
  ];
}

function configMap(o: RenderOptions): Obj {
  // p2p: berthd serves its content to the other nodes on this port (every address: the peers'
  // source addresses are checked against the peer list the node agent keeps) and asks them first.
  const head = '# Written by the installer to /etc/berth/config.toml when that file is absent.\n';
  const toml = o.p2p.enabled ? `${head}[p2p]\nlisten = "0.0.0.0:${o.p2p.port}"\n` : head;
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'berth-config', namespace: o.namespace, labels: { [APP]: 'berth' } }, data: { 'config.toml': toml } };
}

/** The headless Service whose DNS name the node agents resolve to find their p2p peers. */
export const P2P_SERVICE = 'berth-p2p';

/**
 * Headless: its name resolves to the addresses of the ready berth-node pods, which run with
 * hostNetwork, so they are the nodes' own addresses, where berthd's p2p server listens. Not-ready
 * pods (berthd not answering CRI Status) are left out, so a broken node is no one's peer.
 */
function p2pService(o: RenderOptions): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: P2P_SERVICE, namespace: o.namespace, labels: { [APP]: 'berth' } },
    spec: {
      clusterIP: 'None',
      selector: { [APP]: 'berth-node' },
      ports: [{ name: 'p2p', port: o.p2p.port, targetPort: o.p2p.port, protocol: 'TCP' }],
    },
  };
}

/** Where the berth image (hack/build-image.ts) keeps Node and the bundles. */
export const IMAGE_NODE = '/berth/bin/node';
export const IMAGE_BUNDLE = '/berth/lib/berth-controller.js';
/**
 * Node flags of the node agent (hack/bench-controller.sh runs its soak with them, and without):
 * a 1 MB young generation, so bursts of watch events do not grow it; V8's memory-saving mode
 * (smaller heap growth steps, code flushed sooner): measured, RSS +4 to +9 MB after the soak where
 * the young-generation cap alone left +12 to +19 MB in the same runs, none of it retained objects.
 */
export const AGENT_NODE_FLAGS = ['--max-semi-space-size=1', '--optimize-for-size'];
/** berth-install (src/installer/), the init containers' program. */
export const IMAGE_INSTALLER = '/berth/lib/berth-install.js';

function daemonSet(o: RenderOptions, uninstall: boolean): Obj {
  const name = uninstall ? 'berth-uninstall' : 'berth-node';
  const labels = { [APP]: name, 'app.kubernetes.io/version': o.version };
  const hostVolumes = [
    { name: 'host', hostPath: { path: '/', type: 'Directory' } },
    { name: 'config', configMap: { name: 'berth-config' } },
  ];
  const install = {
    name: uninstall ? 'uninstall' : 'install',
    image: o.image,
    command: [IMAGE_NODE, IMAGE_INSTALLER, uninstall ? 'uninstall' : 'install', '--host-root', '/host', '--version', o.version, '--config-template', '/config/config.toml'],
    securityContext: { privileged: true },
    volumeMounts: [
      { name: 'host', mountPath: '/host', mountPropagation: 'Bidirectional' },
      { name: 'config', mountPath: '/config', readOnly: true },
    ],
    resources: { requests: { cpu: '50m', memory: '64Mi' } },
  };
  const agent = {
    name: 'node-agent',
    image: o.image,
    command: [
      IMAGE_NODE, ...AGENT_NODE_FLAGS, IMAGE_BUNDLE, '--role', 'node-agent', '--node-name', '$(NODE_NAME)', '--socket', '/run/berth/berth.sock', '--health-addr', `127.0.0.1:${HEALTH_PORT}`,
      // The agent resolves the headless Service (dnsPolicy ClusterFirstWithHostNet) and pushes the peers to berthd.
      ...(o.p2p.enabled ? ['--p2p-peers', `${P2P_SERVICE}.${o.namespace}.svc`, '--p2p-port', String(o.p2p.port)] : []),
    ],
    env: [{ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }],
    securityContext: {
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      runAsUser: 65532,
      // berthd's socket is 0660 root:root: group 0 may connect, nothing else is granted.
      runAsGroup: 0,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [
      { name: 'berth-run', mountPath: '/run/berth', readOnly: true },
      { name: 'token', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true },
    ],
    // Liveness asks only the agent's own loop; readiness is berthd's CRI Status.
    livenessProbe: { httpGet: { host: '127.0.0.1', path: '/healthz', port: HEALTH_PORT }, periodSeconds: 20, failureThreshold: 3 },
    readinessProbe: { httpGet: { host: '127.0.0.1', path: '/readyz', port: HEALTH_PORT }, periodSeconds: 10, failureThreshold: 2 },
    resources: { requests: { cpu: '20m', memory: '96Mi' }, limits: { memory: '192Mi' } },
  };
  const idle = {
    name: 'done',
    image: o.image,
    command: [IMAGE_NODE, '-e', 'setInterval(() => {}, 1 << 30)'],
    securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, runAsUser: 65532, capabilities: { drop: ['ALL'] } },
    resources: { requests: { cpu: '1m', memory: '16Mi' } },
  };
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name, namespace: o.namespace, labels },
    spec: {
      selector: { matchLabels: { [APP]: name } },
      updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '10%' } },
      template: {
        metadata: { labels },
        spec: {
          serviceAccountName: 'berth-node',
          automountServiceAccountToken: false,
          hostNetwork: true,
          dnsPolicy: 'ClusterFirstWithHostNet',
          priorityClassName: 'system-node-critical',
          tolerations: [{ operator: 'Exists' }],
          terminationGracePeriodSeconds: 10,
          initContainers: [install],
          containers: [uninstall ? idle : agent],
          volumes: uninstall
            ? hostVolumes
            : [
                ...hostVolumes,
                { name: 'berth-run', hostPath: { path: '/run/berth', type: 'DirectoryOrCreate' } },
                {
                  // A projected token bound to the pod: the apiserver adds the node-name claim the
                  // admission policy checks.
                  name: 'token',
                  projected: {
                    sources: [
                      { serviceAccountToken: { path: 'token', expirationSeconds: 3607 } },
                      { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
                      { downwardAPI: { items: [{ path: 'namespace', fieldRef: { fieldPath: 'metadata.namespace' } }] } },
                    ],
                  },
                },
              ],
        },
      },
    },
  };
}

function aggregator(o: RenderOptions): Obj {
  const labels = { [APP]: 'berth-aggregator', 'app.kubernetes.io/version': o.version };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'berth-aggregator', namespace: o.namespace, labels },
    spec: {
      replicas: 1,
      // Never two at once: status summaries are recomputed whole, one writer is enough.
      strategy: { type: 'Recreate' },
      selector: { matchLabels: { [APP]: 'berth-aggregator' } },
      template: {
        metadata: { labels },
        spec: {
          serviceAccountName: 'berth-aggregator',
          containers: [
            {
              name: 'aggregator',
              image: o.image,
              command: [IMAGE_NODE, IMAGE_BUNDLE, '--role', 'aggregator', '--health-addr', `0.0.0.0:${HEALTH_PORT}`],
              ports: [{ name: 'health', containerPort: HEALTH_PORT }],
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                runAsNonRoot: true,
                runAsUser: 65532,
                capabilities: { drop: ['ALL'] },
                seccompProfile: { type: 'RuntimeDefault' },
              },
              livenessProbe: { httpGet: { path: '/healthz', port: 'health' }, periodSeconds: 20 },
              resources: { requests: { cpu: '20m', memory: '96Mi' }, limits: { memory: '256Mi' } },
            },
          ],
        },
      },
    },
  };
}

function runtimeClasses(): Obj[] {
  return [
    { apiVersion: 'node.k8s.io/v1', kind: 'RuntimeClass', metadata: { name: 'berth', labels: { [APP]: 'berth' } }, handler: 'runc', scheduling: { nodeSelector: { [LABEL_RUNTIME]: 'ready' } } },
    {
      apiVersion: 'node.k8s.io/v1',
      kind: 'RuntimeClass',
      metadata: { name: 'berth-crun', labels: { [APP]: 'berth' } },
      handler: 'crun',
      scheduling: { nodeSelector: { [LABEL_RUNTIME]: 'ready', [`${LABEL_HANDLER_PREFIX}crun`]: 'true' } },
    },
  ];
}

function examples(ns: string): Obj[] {
  return [
    {
      apiVersion: API_VERSION,
      kind: 'ImagePrefetch',
      metadata: { name: 'base-images', namespace: ns },
      spec: {
        images: ['docker.io/library/busybox:1.36', 'registry.k8s.io/pause:3.10'],
        nodeSelector: { [LABEL_RUNTIME]: 'ready' },
        pullSecrets: [{ name: 'regcred' }],
        pin: true,
        maxConcurrentPulls: 2,
        backoff: { initialSeconds: 10, maxSeconds: 600 },
      },
    },
  ];
}

/** Every file of manifests/, relative path → its documents. */
export function render(o: RenderOptions = DEFAULTS): Map<string, Obj[]> {
  const ns = o.namespace;
  return new Map<string, Obj[]>([
    ['00-namespace.yaml', [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { 'pod-security.kubernetes.io/enforce': 'privileged' } } }]],
    ['10-crds.yaml', [imagePrefetchCrd(), berthNodeCrd()]],
    ['20-rbac.yaml', rbac(ns)],
    ['30-admission-policy.yaml', admissionPolicy(ns)],
    ['40-daemonset.yaml', [configMap(o), daemonSet(o, false), ...(o.p2p.enabled ? [p2pService(o)] : [])]],
    ['50-aggregator.yaml', [aggregator(o)]],
    ['60-runtimeclasses.yaml', runtimeClasses()],
    ['examples/imageprefetch.yaml', examples('default')],
    ['uninstall/berth-uninstall.yaml', [configMap(o), daemonSet(o, true)]],
  ]);
}

export function toYaml(docs: Obj[]): string {
  return docs.map((d) => stringify(d, { lineWidth: 0 })).join('---\n');
}

export const MANIFESTS_DIR = fileURLToPath(new URL('../manifests/', import.meta.url));
export const HEADER = '# Rendered by hack/render-manifests.ts; edit that file, not this one.\n';

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      image: { type: 'string' },
      version: { type: 'string' },
      namespace: { type: 'string' },
      p2p: { type: 'boolean', default: false },
      'p2p-port': { type: 'string' },
      out: { type: 'string' },
    },
    strict: true,
  });
  const port = values['p2p-port'] === undefined ? DEFAULTS.p2p.port : Number(values['p2p-port']);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error('--p2p-port must be a port number (1-65535)');
  const ns = values.namespace ?? DEFAULTS.namespace;
  if (!new RegExp('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$').test(ns) || ns.length > 63) throw new Error(`--namespace ${ns} is not a DNS-1123 label`);
  const version = values.version ?? DEFAULTS.version;
  const opts: RenderOptions = { image: values.image ?? `localhost:5000/berth/berth:${version}`, version, namespace: ns, p2p: { enabled: values.p2p ?? false, port } };
  const out = values.out ?? MANIFESTS_DIR;
  for (const sub of ['examples', 'uninstall']) await rm(join(out, sub), { recursive: true, force: true });
  for (const [file, docs] of render(opts)) {
    await mkdir(join(out, file, '..'), { recursive: true });
    await writeFile(join(out, file), HEADER + toYaml(docs));
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`render-manifests: ${(err as Error).message}\n`);
    process.exit(2);
  });
}
