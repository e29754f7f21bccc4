// The node agent's p2p peer list: resolves the DNS names of the berth nodes (a headless Service
// over the DaemonSet's hostNetwork pods, so its addresses are the nodes'), drops this node's own
// addresses, and states the list to berthd with berth.v1.Peers/SetPeers. berthd holds peers in
// memory only, so the list is stated on every round, not only on change: a restarted berthd has
// it back within one interval.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Logger } from 'pino';
import type { CriClient } from '../client/cri-client.ts';
import { sleep } from './backoff.ts';

export interface PeerPushOptions {
  cri: CriClient;
  log: Logger;
  /** DNS names whose addresses are the berth nodes (normally one: the headless Service). */
  names: string[];
  /** The p2p port berthd listens on, the same on every node (`[p2p] listen`). */
  port: number;
  /** Between two rounds (ms). */
  intervalMs: number;
}

/** This host's interface addresses: with hostNetwork they are the node's, and the node is no peer of itself. */
function ownAddresses(): Set<string> {
  return new Set(Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((a) => a.address.toLowerCase())));
}

/** The peer list the names resolve to now, sorted (so an unchanged list compares equal), without this node. */
export async function resolvePeers(names: readonly string[], port: number): Promise<string[]> {
  const own = ownAddresses();
  const found = new Set<string>();
  for (const name of names) {
    for (const { address } of await lookup(name, { all: true })) {
      const a = address.toLowerCase();
      if (!own.has(a)) found.add(isIP(a) === 6 ? `[${a}]:${port}` : `${a}:${port}`);
    }
  }
  return [...found].sort();
}

export class PeerPusher {
  readonly #o: PeerPushOptions;
  #last: string[] | undefined;
  #failing = false;

  constructor(options: PeerPushOptions) {
    this.#o = options;
  }

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.#round(signal);
      await sleep(this.#o.intervalMs, signal);
    }
  }

  async #round(signal: AbortSignal): Promise<void> {
    const { log } = this.#o;
    let peers: string[];
    try {
      peers = await resolvePeers(this.#o.names, this.#o.port);
    } catch (err) {
      // DNS down or the Service not there yet: keep what berthd has; the next round tries again.
      log.warn({ names: this.#o.names, err: (err as Error).message }, 'p2p: cannot resolve the peers; keeping the last list');
      return;
    }
    try {
      await this.#o.cri.call('peers', 'SetPeers', { peers }, { timeoutMs: 10_000, signal });
    } catch (err) {
      if (signal.aborted) return;
      if (!this.#failing) log.warn({ err: (err as Error).message }, 'p2p: berthd did not take the peer list; retrying every round');
      this.#failing = true;
      return;
    }
    if (this.#failing) log.info('p2p: berthd takes the peer list again');
    this.#failing = false;
    if (this.#last?.join() !== peers.join()) log.info({ peers }, 'p2p: peers changed');
    this.#last = peers;
  }
}
