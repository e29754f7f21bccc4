// TypeScript shapes of the CRI messages berth handles, as the proto loader presents them
// (snake_case fields, 64-bit integers as numbers, enums as names). Only what handlers touch.

export interface ImageSpec {
  image: string;
  annotations: Record<string, string>;
  user_specified_image?: string;
  runtime_handler?: string;
  image_ref?: string;
}

export interface Int64Value {
  value: number;
}

export interface Image {
  id: string;
  repo_tags: string[];
  repo_digests: string[];
  size: number;
  uid: Int64Value | null;
  username: string;
  spec: ImageSpec | null;
  pinned: boolean;
}

export interface ImageFilter {
  image: ImageSpec | null;
}

export interface ListImagesRequest {
  filter: ImageFilter | null;
}
export interface ListImagesResponse {
  images: Image[];
}

export type StreamImagesRequest = ListImagesRequest;
export type StreamImagesResponse = ListImagesResponse;

export interface ImageStatusRequest {
  image: ImageSpec | null;
  verbose: boolean;
}
export interface ImageStatusResponse {
  image: Image | null;
  info: Record<string, string>;
}

export interface AuthConfig {
  username: string;
  password: string;
  auth: string;
  server_address: string;
  identity_token: string;
  registry_token: string;
}

export interface PullImageRequest {
  image: ImageSpec | null;
  auth: AuthConfig | null;
  sandbox_config: unknown;
}
export interface PullImageResponse {
  image_ref: string;
}

export interface RemoveImageRequest {
  image: ImageSpec | null;
}
export type RemoveImageResponse = Record<string, never>;

export interface UInt64Value {
  value: number;
}
export interface FilesystemUsage {
  timestamp: number;
  fs_id: { mountpoint: string };
  used_bytes: UInt64Value;
  inodes_used: UInt64Value;
}
export type ImageFsInfoRequest = Record<string, never>;
export interface ImageFsInfoResponse {
  image_filesystems: FilesystemUsage[];
  container_filesystems: FilesystemUsage[];
}

export interface VersionRequest {
  version: string;
}
export interface VersionResponse {
  version: string;
  runtime_name: string;
  runtime_version: string;
  runtime_api_version: string;
}

export interface RuntimeCondition {
  type: string;
  status: boolean;
  reason: string;
  message: string;
}
export interface StatusRequest {
  verbose: boolean;
}
export interface StatusResponse {
  status: { conditions: RuntimeCondition[] };
  info: Record<string, string>;
  runtime_handlers: Array<{ name: string; features: { recursive_read_only_mounts: boolean; user_namespaces: boolean } }>;
  features: { supplemental_groups_policy: boolean; user_namespaces_host_network: boolean; mount_options: boolean } | null;
}

export type RuntimeConfigRequest = Record<string, never>;
export interface RuntimeConfigResponse {
  linux: { cgroup_driver: 'SYSTEMD' | 'CGROUPFS' };
}
