// Attach: validates the request and answers a one-time streaming URL that joins the container's
// main process stdio when the client connects (src/streaming/).
import type { UnaryRpc } from './rpc.ts';
import type { AttachRequest__Output } from './gen/runtime/v1/AttachRequest.ts';
import type { AttachResponse } from './gen/runtime/v1/AttachResponse.ts';
import { invalidArgument } from '../util/errors.ts';

export const attach: UnaryRpc<AttachRequest__Output, AttachResponse> = async (req, ctx) => {
  if (!req.container_id) throw invalidArgument('Attach needs a container_id');
  const url = ctx.streaming.attachUrl({
    containerId: req.container_id,
    tty: req.tty,
    stdin: req.stdin,
    stdout: req.stdout,
    stderr: req.stderr,
  });
  return { url };
};
