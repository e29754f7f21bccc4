// berth.v1.Node/SwitchStatus: how the last kubelet switch or revert went (or that it still runs).
import type { UnaryRpc } from './rpc.ts';
import type { SwitchStatusRequest__Output } from './gen-berth/berth/v1/SwitchStatusRequest.ts';
import type { SwitchStatusResponse } from './gen-berth/berth/v1/SwitchStatusResponse.ts';
import type { SwitchOperation } from '../hostops/kubelet-switch.ts';

export function switchStatusView(op: SwitchOperation): SwitchStatusResponse {
  const state = ({ idle: 'SWITCH_STATE_IDLE', running: 'SWITCH_STATE_RUNNING', succeeded: 'SWITCH_STATE_SUCCEEDED', failed: 'SWITCH_STATE_FAILED' } as const)[op.state];
  return { state, revert: op.revert, message: op.message, started_at_ms: op.startedAt, finished_at_ms: op.finishedAt };
}

export const switchStatus: UnaryRpc<SwitchStatusRequest__Output, SwitchStatusResponse> = async (_req, ctx) => switchStatusView(ctx.kubelet.status());
