// RPCs of berth's own services served on the CRI socket (proto/berth/v1/), by service.
import { unary, type AnyHandler } from './handlers.ts';
import { setPins } from './set-pins.ts';
import { listPins } from './list-pins.ts';
import { switchKubelet } from './switch-kubelet.ts';
import { switchStatus } from './switch-status.ts';
import { setPeers } from './set-peers.ts';
import { listPeers } from './list-peers.ts';

export const BERTH_HANDLERS: Record<'Pins' | 'Node' | 'Peers', Record<string, AnyHandler>> = {
  Pins: {
    SetPins: unary(setPins),
    ListPins: unary(listPins),
  },
  Node: {
    SwitchKubelet: unary(switchKubelet),
    SwitchStatus: unary(switchStatus),
  },
  Peers: {
    SetPeers: unary(setPeers),
    ListPeers: unary(listPeers),
  },
};
