// berth-controller: one program, two roles. `--role node-agent` runs in the DaemonSet and acts for
// its own node through the local berthd; `--role aggregator` (a 1-replica Deployment) summarizes
// ImagePrefetch status from the BerthNodes. Flags, logging, endpoints and shutdown live here.
import { parseArgs } from 'node:util';
import type { Server } from 'node:http';
import { pino } from 'pino';
import { CriClient } from '../client/cri-client.ts';
import { BERTH_VERSION } from '../version.ts';
import { Kube } from './kube.ts';
import { Metrics } from './metrics.ts';
import { DEFAULT_TIMING, type WatchTiming } from './informer.ts';
import { NodeAgent } from './agent.ts';
import { Aggregator } from './aggregator.ts';
import { parseAddr, serve } from './http.ts';

const HELP = `berth-controller ${BERTH_VERSION} — berth's Kubernetes node agent and aggregator

Usage: berth-controller --role node-agent --node-name NAME [flags]
       berth-controller --role aggregator [flags]

Flags:
  --role ROLE              node-agent or aggregator
  --node-name NAME         the node this agent acts for (node-agent; the DaemonSet passes spec.nodeName)
  --socket PATH            berthd's socket (default /run/berth/berth.sock)
  --kubeconfig FILE        API credentials (default: the pod's service account)
  --health-addr HOST:PORT  /healthz and /readyz (default 127.0.0.1:9741; "" to disable)
  --metrics-addr HOST:PORT Prometheus /metrics (default off)
  --log-level LEVEL        trace, debug, info, warn, error (default info)
  --p2p-peers NAMES        node agent, p2p on: comma-separated DNS names (the headless Service
                           over the DaemonSet) whose addresses, minus this node's, are pushed to
                           berthd as its peers (berth.v1.Peers/SetPeers); default off
  --p2p-port N             the p2p port of berthd on every node (default 5050)
  --p2p-interval-ms N      how often the names are resolved and the list pushed (default 30000)
Tuning (defaults suit production; tests shrink them):
  --watch-timeout S-S      server timeoutSeconds range of each watch (default 300-600)
  --idle-timeout-ms N      drop a watch silent this long, above the bookmark period (default 150000)
  --relist-jitter-ms N     random delay before a relist after 410 Gone (default 5000)
  --backoff-ms N-N         API retry backoff, first and largest delay (default 1000-60000)
  --page-size N            list page size (default 500)
  --runtime-poll-ms N      how often berthd's CRI Status is asked (default 10000)
  --status-interval-ms N   shortest gap between status writes (default 250 agent, 1000 aggregator)
  --time-scale F           multiplies ImagePrefetch jitter, backoff and refresh seconds (default 1)
  --switch-timeout-ms N    how long the kubelet has, after the host's switch unit ended, to be Ready
                           on berth before the agent reverts it, and after a revert unit ended, to
                           be Ready on its previous runtime before RevertFailed (default 600000)
  -h, --help, --version
`;

function range(v: string | undefined, flag: string, dflt: { min: number; max: number }): { min: number; max: number } {
  if (v === undefined) return dflt;
  const m = /^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$/.exec(v);
  if (!m || Number(m[1]) > Number(m[2])) throw new Error(`${flag} must be MIN-MAX, got ${JSON.stringify(v)}`);
  return { min: Number(m[1]), max: Number(m[2]) };
}

function num(v: string | undefined, flag: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${flag} must be a non-negative number, got ${JSON.stringify(v)}`);
  return n;
}

export async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        role: { type: 'string' },
        'node-name': { type: 'string' },
        socket: { type: 'string', default: '/run/berth/berth.sock' },
        kubeconfig: { type: 'string' },
        'health-addr': { type: 'string', default: '127.0.0.1:9741' },
        'metrics-addr': { type: 'string' },
        'log-level': { type: 'string', default: 'info' },
        'watch-timeout': { type: 'string' },
        'idle-timeout-ms': { type: 'string' },
        'relist-jitter-ms': { type: 'string' },
        'backoff-ms': { type: 'string' },
        'page-size': { type: 'string' },
        'runtime-poll-ms': { type: 'string' },
        'switch-timeout-ms': { type: 'string' },
        'status-interval-ms': { type: 'string' },
        'time-scale': { type: 'string' },
        'p2p-peers': { type: 'string' },
        'p2p-port': { type: 'string' },
        'p2p-interval-ms': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', default: false },
      },
    }));
  } catch (err) {
    process.stderr.write(`berth-controller: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`berth-controller ${BERTH_VERSION}\n`);
    return 0;
  }
  const role = values.role;
  let timing: WatchTiming;
  let health: { host: string; port: number } | undefined;
  let metricsAddr: { host: string; port: number } | undefined;
  let peers: { names: string[]; port: number; intervalMs: number } | undefined;
  try {
    if (role !== 'node-agent' && role !== 'aggregator') throw new Error('--role must be node-agent or aggregator');
    if (role === 'node-agent' && !values['node-name']) throw new Error('--node-name is required for the node agent (the DaemonSet passes spec.nodeName)');
    const backoff = range(values['backoff-ms'], '--backoff-ms', { min: DEFAULT_TIMING.backoff.initialMs, max: DEFAULT_TIMING.backoff.maxMs });
    timing = {
      watchTimeoutSeconds: range(values['watch-timeout'], '--watch-timeout', DEFAULT_TIMING.watchTimeoutSeconds),
      idleTimeoutMs: num(values['idle-timeout-ms'], '--idle-timeout-ms', DEFAULT_TIMING.idleTimeoutMs),
      relistJitterMs: num(values['relist-jitter-ms'], '--relist-jitter-ms', DEFAULT_TIMING.relistJitterMs),
      backoff: { initialMs: backoff.min, maxMs: backoff.max },
      pageSize: Math.max(1, Math.round(num(values['page-size'], '--page-size', DEFAULT_TIMING.pageSize))),
    };
    health = values['health-addr'] ? parseAddr(values['health-addr'], '--health-addr') : undefined;
    metricsAddr = values['metrics-addr'] ? parseAddr(values['metrics-addr'], '--metrics-addr') : undefined;
    if (values['p2p-peers'] !== undefined) {
      const names = values['p2p-peers'].split(',').map((n) => n.trim()).filter(Boolean);
      if (names.length === 0) throw new Error('--p2p-peers must name at least one DNS name (the headless Service over the berth DaemonSet)');
      const port = num(values['p2p-port'], '--p2p-port', 5050);
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`--p2p-port must be a port number (1-65535), got ${JSON.stringify(values['p2p-port'])}`);
      peers = { names, port, intervalMs: Math.max(100, num(values['p2p-interval-ms'], '--p2p-interval-ms', 30_000)) };
    }
  } catch (err) {
    process.stderr.write(`berth-controller: ${(err as Error).message}\n`);
    return 2;
  }
  const log = pino({ level: values['log-level'], base: { pid: process.pid, role } }, pino.destination({ dest: 2, sync: true }));
  const metrics = new Metrics();
  const ac = new AbortController();
  const servers: Server[] = [];
  const stop = (signal: NodeJS.Signals): void => {
    log.info({ signal }, 'shutting down');
    ac.abort();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  let kube: Kube | undefined;
  let cri: CriClient | undefined;
  try {
    kube = new Kube({ kubeconfig: values.kubeconfig, metrics });
    let ready: (() => Promise<boolean>) | undefined;
    let work: Promise<void>;
    if (role === 'node-agent') {
      cri = new CriClient(values.socket);
      const agent = new NodeAgent({
        nodeName: values['node-name'] as string,
        kube,
        cri,
        log,
        metrics,
        timing,
        runtimePollMs: num(values['runtime-poll-ms'], '--runtime-poll-ms', 10_000),
        statusIntervalMs: num(values['status-interval-ms'], '--status-interval-ms', 250),
        pinOwner: 'node-agent',
        timeScale: num(values['time-scale'], '--time-scale', 1),
        switchTimeoutMs: num(values['switch-timeout-ms'], '--switch-timeout-ms', 600_000),
        peers,
      });
      ready = () => agent.runtimeReady();
      work = agent.run(ac.signal);
    } else {
      const aggregator = new Aggregator({ kube, log, metrics, timing, writeIntervalMs: num(values['status-interval-ms'], '--status-interval-ms', 1000) });
      ready = async () => true;
      work = aggregator.run(ac.signal);
    }
    if (health) servers.push(await serve(health, { ready }));
    if (metricsAddr) servers.push(await serve(metricsAddr, { metrics }));
    log.info({ version: BERTH_VERSION, node: values['node-name'] }, 'berth-controller running');
    await work;
    return 0;
  } catch (err) {
    log.fatal({ err: (err as Error).message }, 'berth-controller failed');
    return 1;
  } finally {
    ac.abort();
    for (const s of servers) s.close();
    cri?.close();
    kube?.close();
  }
}
