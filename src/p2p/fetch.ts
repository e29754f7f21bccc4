// The puller's side of p2p: asks up to two peers, in random order, for a blob before the registry
// is asked. A peer gets a short deadline to answer; any failure is only
// logged at debug level, and the caller then goes to the registry. Peers are not trusted: what they
// send is verified against the digest by the same code that verifies registry downloads.
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { HttpTransport, discard } from '../image/registry/http.ts';
import { errorMessage } from '../util/errors.ts';
import { formatPeer, type Peer, type PeerSet } from './peers.ts';

/** Peers asked per blob: one more than one, so a node that just lost the blob costs little, and no more, so a dead cluster costs little too. */
const PEERS_PER_REQUEST = 2;
/** A paused consumer (the unpacker) counts as silence, so the body gets the registry client's allowance, not the connect deadline. */
const BODY_IDLE_MS = 120_000;

export interface PeerFetcherOptions {
  peers: PeerSet;
  /** Connect + response headers, per peer. */
  timeoutMs: number;
  /** This node's p2p listen address when it is a specific IP: requests leave from it, since peers admit by source address. */
  localAddress?: string;
  log: Logger;
}

export interface PeerBlob {
  body: Readable;
  /** `host:port` of the peer that answered. */
  peer: string;
}

export class PeerFetcher {
  readonly #o: PeerFetcherOptions;
  readonly #http = new HttpTransport();

  constructor(options: PeerFetcherOptions) {
    this.#o = options;
  }

  /** Whether there is anyone to ask. */
  get hasPeers(): boolean {
    return this.#o.peers.all().length > 0;
  }

  /** A peer's response body for blob `digest` (unverified: the reader verifies), or undefined when no peer has it. */
  async blob(repo: string, digest: string, size: number, signal: AbortSignal | undefined): Promise<PeerBlob | undefined> {
    const path = `/v2/${repo}/blobs/${digest}`;
    for (const p of this.#o.peers.pick(PEERS_PER_REQUEST)) {
      signal?.throwIfAborted();
      const peer = formatPeer(p);
      try {
        const res = await this.#http.send({
          url: peerUrl(p, path),
          method: 'GET',
          timeoutMs: this.#o.timeoutMs,
          bodyIdleTimeoutMs: BODY_IDLE_MS,
          signal,
          localAddress: this.#o.localAddress,
        });
        if (res.statusCode !== 200) {
          discard(res);
          throw new Error(`answered ${res.statusCode ?? 0}`);
        }
        // A length that differs cannot be the blob: do not even start reading it.
        if (Number(res.headers['content-length']) !== size) {
          res.destroy();
          throw new Error(`answered ${res.headers['content-length'] ?? 'no'} bytes for a ${size}-byte blob`);
        }
        return { body: res, peer };
      } catch (err) {
        if (signal?.aborted) throw err;
        this.#o.log.debug({ peer, path, err: errorMessage(err) }, 'p2p: peer did not serve; trying the next source');
      }
    }
    return undefined;
  }

  close(): void {
    this.#http.close();
  }
}

function peerUrl(p: Peer, path: string): URL {
  return new URL(`http://${formatPeer(p)}${path}`);
}
