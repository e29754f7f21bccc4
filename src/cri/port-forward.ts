// PortForward: validates the request and answers a one-time streaming URL that forwards
// connections into the pod's network namespace (src/streaming/).
import type { UnaryRpc } from './rpc.ts';
import type { PortForwardRequest__Output } from './gen/runtime/v1/PortForwardRequest.ts';
import type { PortForwardResponse } from './gen/runtime/v1/PortForwardResponse.ts';
import { invalidArgument } from '../util/errors.ts';

export const portForward: UnaryRpc<PortForwardRequest__Output, PortForwardResponse> = async (req, ctx) => {
  if (!req.pod_sandbox_id) throw invalidArgument('PortForward needs a pod_sandbox_id');
  const bad = req.port.find((p) => !Number.isInteger(p) || p < 1 || p > 65535);
  if (bad !== undefined) throw invalidArgument(`PortForward port ${bad} is not a port number (1-65535)`);
  return { url: ctx.streaming.portForwardUrl(req.pod_sandbox_id, req.port) };
};
