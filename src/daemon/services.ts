// The daemon's services in the order they start (and the reverse order they stop): stores and the
// image service, the p2p server (when `[p2p] listen` is set), pod networking, pod sandboxes,
// containers (whose init recovers what ran while berthd was down), the streaming server
// (exec/attach/port-forward URLs), and last the CRI server that exposes them.
import type { Logger } from 'pino';
import type { BerthConfig } from '../config/config.ts';
import { ImageService } from '../image/service.ts';
import { PodNetwork } from '../network/cni.ts';
import { SandboxService } from '../sandbox/service.ts';
import { ContainerService } from '../container/service.ts';
import { RuntimeProbe } from '../runtime-probe.ts';
import { KubeletSwitcher } from '../hostops/kubelet-switch.ts';
import { startCriServer } from '../cri/server.ts';
import { startStreamingServer } from '../streaming/server.ts';
import { RuntimeStreamingBackend } from '../streaming/runtime-backend.ts';
import { PeerSet } from '../p2p/peers.ts';

export interface Services {
  /** Where Exec/Attach/PortForward URLs point, for the start-up log line. */
  streamingUrl: string;
  /** Stops everything in reverse order; containers keep running under their conmon. */
  stop(): Promise<void>;
}

/** 0.0.0.0 or ::: a listener on every address, so outgoing requests keep the kernel's choice of source. */
function isUnspecified(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

export async function startServices(config: BerthConfig, log: Logger): Promise<Services> {
  const stops: Array<() => Promise<void> | void> = [];
  const stop = async (): Promise<void> => {
    for (const fn of stops.reverse()) {
      try {
        await fn();
      } catch (err) {
        log.error({ err }, 'a service failed to stop cleanly');
      }
    }
  };
  try {
    // p2p (off unless [p2p] listen is set): its modules load only then, so an idle node without it carries none of it.
    const { listen } = config.p2p;
    const peers = listen ? new PeerSet(config.p2p.peers) : undefined;
    const p2pLog = log.child({ component: 'p2p' });
    const fetcher = listen && peers
      ? new (await import('../p2p/fetch.ts')).PeerFetcher({ peers, timeoutMs: config.p2p.peerTimeoutMs, localAddress: isUnspecified(listen.host) ? undefined : listen.host, log: p2pLog })
      : undefined;
    const images = new ImageService(config, log.child({ component: 'images' }), fetcher);
    await images.init();
    stops.push(() => images.close());
    if (listen && peers) {
      const p2p = await (await import('../p2p/server.ts')).startP2pServer({ listen, content: images.blobs, peers, log: p2pLog });
      stops.push(() => p2p.stop());
    }

    const network = new PodNetwork({ config, log: log.child({ component: 'network' }) });
    await network.init();
    stops.push(() => network.close());

    const sandboxes = new SandboxService(config, log.child({ component: 'sandboxes' }), network);
    const containers = new ContainerService(config, log.child({ component: 'containers' }), images, sandboxes);
    await sandboxes.init();
    stops.push(() => sandboxes.close());
    await containers.init();
    stops.push(() => containers.close());

    const backend = new RuntimeStreamingBackend(config, containers, sandboxes, log.child({ component: 'streaming' }));
    stops.push(() => backend.close());
    const streaming = await startStreamingServer(config.streaming, backend, log.child({ component: 'streaming' }));
    stops.push(() => streaming.stop());

    const kubelet = new KubeletSwitcher(config.node, log.child({ component: 'kubelet-switch' }));
    const server = await startCriServer(config.socket, { config, log, images, probe: new RuntimeProbe(config), network, sandboxes, containers, streaming, kubelet, peers });
    // Let in-flight RPCs finish briefly, then cut the rest so shutdown never hangs.
    stops.push(() => server.shutdown(5000));
    return { streamingUrl: streaming.baseUrl, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
