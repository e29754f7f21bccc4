// Exec: validates the request and answers a one-time streaming URL; the command runs when the
// client connects to it (src/streaming/).
import type { UnaryRpc } from './rpc.ts';
import type { ExecRequest__Output } from './gen/runtime/v1/ExecRequest.ts';
import type { ExecResponse } from './gen/runtime/v1/ExecResponse.ts';
import { invalidArgument } from '../util/errors.ts';

export const exec: UnaryRpc<ExecRequest__Output, ExecResponse> = async (req, ctx) => {
  if (!req.container_id) throw invalidArgument('Exec needs a container_id');
  const url = ctx.streaming.execUrl({
    containerId: req.container_id,
    cmd: req.cmd,
    tty: req.tty,
    stdin: req.stdin,
    stdout: req.stdout,
    stderr: req.stderr,
  });
  return { url };
};
