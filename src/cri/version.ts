// Version: the runtime's name and versions, the first RPC a kubelet or crictl sends.
import type { UnaryRpc } from './rpc.ts';
import type { VersionRequest__Output as VersionRequest } from './gen/runtime/v1/VersionRequest.ts';
import type { VersionResponse } from './gen/runtime/v1/VersionResponse.ts';
import { BERTH_VERSION } from '../version.ts';

/** The CRI API version berth speaks; kubelets compare it with their own. */
const CRI_API_VERSION = 'v1';

export const version: UnaryRpc<VersionRequest, VersionResponse> = async () => ({
  // The kubelet API version field is historical; containerd and CRI-O answer 0.1.0 too.
  version: '0.1.0',
  runtime_name: 'berth',
  runtime_version: BERTH_VERSION,
  runtime_api_version: CRI_API_VERSION,
});
