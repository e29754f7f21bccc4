// The nodes this berthd exchanges content with: static peers from `[p2p] peers` plus the list the node
// agent pushes (berth.v1.Peers/SetPeers), held in memory only — the agent pushes again after a
// restart. The same set answers who may fetch from this node's p2p server (by source address).
import { isIP } from 'node:net';
import { invalidArgument } from '../util/errors.ts';

/** One peer's p2p server. `host` is an IP literal (no brackets); peers are checked by source address, so names would not do. */
export interface Peer {
  host: string;
  port: number;
}

/** More than any cluster a DaemonSet spans; a list this long is a bug in the sender. */
export const MAX_PEERS = 5000;

/** `IPv4:PORT` or `[IPv6]:PORT` → a Peer; anything else (names, missing port) is refused with the accepted shapes. */
export function parsePeer(text: string): Peer {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):(\d{1,5})$/.exec(text);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (host === undefined || isIP(host) === 0 || (m?.[1] !== undefined && isIP(host) !== 6) || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw invalidArgument(`peer ${JSON.stringify(text)} is not IP:PORT: give an IPv4 address or a bracketed IPv6 address and a port, e.g. 10.0.0.7:5050 or [fd00::7]:5050`);
  }
  return { host: host.toLowerCase(), port };
}

export function formatPeer(p: Peer): string {
  return isIP(p.host) === 6 ? `[${p.host}]:${p.port}` : `${p.host}:${p.port}`;
}

/** `::ffff:10.0.0.7` (an IPv4 client on a dual-stack socket) → `10.0.0.7`. */
export function plainAddress(address: string): string {
  const a = address.toLowerCase();
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a;
}

/** The node itself (an admin's curl, a health check): always allowed. Not all of 127/8, so tests can use other 127.x addresses as other nodes. */
const LOOPBACK = new Set(['127.0.0.1', '::1']);

export class PeerSet {
  readonly #static: Peer[];
  #pushed: Peer[] = [];
  #allowed = new Set<string>();

  constructor(staticPeers: readonly string[]) {
    this.#static = dedupe(staticPeers.map(parsePeer));
    this.#refresh();
  }

  /** Replaces the pushed list (validated whole: one bad entry changes nothing) and returns it normalized. */
  set(peers: readonly string[]): string[] {
    if (peers.length > MAX_PEERS) throw invalidArgument(`${peers.length} peers is more than the ${MAX_PEERS} berthd accepts; send this node's peers, not a list of everything`);
    this.#pushed = dedupe(peers.map(parsePeer));
    this.#refresh();
    return this.#pushed.map(formatPeer);
  }

  get staticPeers(): string[] {
    return this.#static.map(formatPeer);
  }

  get pushedPeers(): string[] {
    return this.#pushed.map(formatPeer);
  }

  /** Static and pushed peers, each once. */
  all(): Peer[] {
    return dedupe([...this.#static, ...this.#pushed]);
  }

  /** Up to `n` peers in random order: spreads the load of a popular blob over the cluster. */
  pick(n: number): Peer[] {
    const all = this.all();
    for (let i = all.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [all[i], all[j]] = [all[j] as Peer, all[i] as Peer];
    }
    return all.slice(0, n);
  }

  /** Whether a connection from `address` may fetch from this node: a current peer's address, or loopback. */
  allows(address: string | undefined): boolean {
    if (address === undefined) return false;
    const a = plainAddress(address);
    return LOOPBACK.has(a) || this.#allowed.has(a);
  }

  #refresh(): void {
    this.#allowed = new Set(this.all().map((p) => p.host));
  }
}

function dedupe(peers: Peer[]): Peer[] {
  const seen = new Map<string, Peer>();
  for (const p of peers) seen.set(formatPeer(p), p);
  return [...seen.values()];
}
