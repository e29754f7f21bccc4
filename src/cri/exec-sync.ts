// ExecSync: runs a command in a running container and returns its output and exit code.
import type { UnaryRpc } from './rpc.ts';
import type { ExecSyncRequest__Output } from './gen/runtime/v1/ExecSyncRequest.ts';
import type { ExecSyncResponse } from './gen/runtime/v1/ExecSyncResponse.ts';
import { invalidArgument } from '../util/errors.ts';

export const execSync: UnaryRpc<ExecSyncRequest__Output, ExecSyncResponse> = async (req, ctx, signal) => {
  if (!req.container_id) throw invalidArgument('container_id is required');
  if (req.cmd.length === 0) throw invalidArgument('cmd is required');
  if (req.timeout < 0) throw invalidArgument(`timeout ${req.timeout} must not be negative`);
  const res = await ctx.containers.execSync(req.container_id, req.cmd, req.timeout, signal);
  return { stdout: res.stdout, stderr: res.stderr, exit_code: res.exitCode };
};
