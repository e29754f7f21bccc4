// berth's Kubernetes API: the berth.io group's resources (ImagePrefetch, BerthNode), their shapes as
// the controller reads and writes them, and the names the manifests and the controller share.

export const GROUP = 'berth.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
/** Node labels the agent owns all start with this; it never touches any other label. */
export const LABEL_PREFIX = 'berth.io/';
export const LABEL_RUNTIME = 'berth.io/runtime';
export const LABEL_VERSION = 'berth.io/version';
export const LABEL_HANDLER_PREFIX = 'berth.io/handler.';
/** The kubelet switch: an admin sets `requested` or `revert`; the agent moves it on from there. */
export const LABEL_SWITCH = 'berth.io/switch';
/** The one taint the agent may set (NoSchedule), while the kubelet is being moved. */
export const TAINT_SWITCHING = 'berth.io/switching';
/** The token claim naming the node a projected service-account token was bound to. */
export const NODE_NAME_CLAIM = 'authentication.kubernetes.io/node-name';

/** Image references as berth parses them: optional registry host[:port], lowercase path, tag, digest. */
export const IMAGE_REFERENCE_PATTERN =
  '^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]{1,5})?/)?' +
  '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*' +
  '(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$';

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string }[];
  deletionTimestamp?: string;
  creationTimestamp?: string;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface Backoff {
  initialSeconds: number;
  maxSeconds: number;
}

export interface ImagePrefetchSpec {
  images: string[];
  nodeSelector?: Record<string, string>;
  pullSecrets?: { name: string }[];
  pin?: boolean;
  refreshSeconds?: number;
  maxConcurrentPulls?: number;
  startJitterSeconds?: number;
  backoff?: Partial<Backoff>;
  timeoutSeconds?: number;
}

export interface PrefetchFailure {
  node: string;
  image: string;
  reason: string;
  message: string;
}

export interface ImagePrefetchStatus {
  observedGeneration?: number;
  matched?: number;
  ready?: number;
  failed?: number;
  conditions?: Condition[];
  failures?: PrefetchFailure[];
}

export interface ImagePrefetch extends KubeObject {
  spec: ImagePrefetchSpec;
  status?: ImagePrefetchStatus;
}

export const IMAGE_STATES = ['Pending', 'Pulling', 'Present', 'Failed'] as const;
export type ImageState = (typeof IMAGE_STATES)[number];

export interface NodeImageStatus {
  image: string;
  /** The digest the image resolved to when last pulled or checked. */
  digest?: string;
  state: ImageState;
  attempts: number;
  reason?: string;
  lastError?: string;
  nextRetryAt?: string;
}

export interface NodePrefetchStatus {
  namespace: string;
  name: string;
  uid: string;
  observedGeneration: number;
  conditions: Condition[];
  images: NodeImageStatus[];
}

export interface BerthNodeStatus {
  runtimeReady?: boolean;
  version?: string;
  handlers?: string[];
  conditions?: Condition[];
  prefetches?: NodePrefetchStatus[];
}

export interface BerthNode extends KubeObject {
  spec?: Record<string, never>;
  status?: BerthNodeStatus;
}

/** The defaults the CRD's schema applies; the agent applies them too, for objects created before. */
export const PREFETCH_DEFAULTS = {
  pin: true,
  refreshSeconds: 3600,
  maxConcurrentPulls: 2,
  startJitterSeconds: 0,
  backoff: { initialSeconds: 10, maxSeconds: 600 },
  timeoutSeconds: 600,
} as const;

/** Bounds of the ImagePrefetch spec, shared by the CRD schema and the agent's own checks. */
export const PREFETCH_BOUNDS = {
  images: { min: 1, max: 100 },
  pullSecrets: { max: 16 },
  refreshSeconds: { min: 10, max: 604800 },
  maxConcurrentPulls: { min: 1, max: 16 },
  startJitterSeconds: { min: 0, max: 3600 },
  backoffSeconds: { min: 1, max: 3600 },
  timeoutSeconds: { min: 10, max: 7200 },
  failuresListed: 10,
} as const;
