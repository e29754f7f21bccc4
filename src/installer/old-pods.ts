// Removes every pod of the runtime the kubelet is leaving, through that runtime's own CRI socket
// and berth's CRI client: the kubelet will not see them again, and they would hold ports and IPs.
import { access } from 'node:fs/promises';
import type { Logger } from 'pino';
import { CriClient } from '../client/cri-client.ts';
import { unavailable, errorMessage } from '../util/errors.ts';

interface ListPodSandboxResponse {
  items?: Array<{ id?: string; metadata?: { name?: string; namespace?: string } }>;
}

/** `unix:///run/x.sock` → `/run/x.sock` (under the host root). */
export function socketOf(endpoint: string): string {
  const m = /^unix:\/\/(\/.+)$/.exec(endpoint);
  if (!m?.[1]) throw unavailable(`runtime endpoint ${endpoint} is not a unix:// socket; remove its pods by hand`);
  return m[1];
}

/** Stops and removes all pod sandboxes on `socket`; a runtime already gone has none to remove. */
export async function removeAllPods(socket: string, log: Logger, signal?: AbortSignal): Promise<number> {
  try {
    await access(socket);
  } catch {
    log.warn({ socket }, 'old runtime socket absent: no pods to remove');
    return 0;
  }
  const client = new CriClient(socket);
  try {
    const list = await client.call<ListPodSandboxResponse>('runtime', 'ListPodSandbox', {}, { timeoutMs: 30_000, signal });
    for (const pod of list.items ?? []) {
      if (!pod.id) continue;
      await client.call('runtime', 'StopPodSandbox', { pod_sandbox_id: pod.id }, { timeoutMs: 60_000, signal });
      await client.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: pod.id }, { timeoutMs: 60_000, signal });
      log.info({ pod: `${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? pod.id}` }, 'removed pod of the old runtime');
    }
    return list.items?.length ?? 0;
  } catch (err) {
    throw unavailable(`removing the old runtime's pods through ${socket}: ${errorMessage(err)}`, err);
  } finally {
    client.close();
  }
}
