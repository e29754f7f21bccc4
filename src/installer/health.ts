// Is the berthd we just started the one answering, and ready? CRI Version must name the version
// installed (an old berthd still running is not success) and Status must report RuntimeReady.
import { setTimeout as delay } from 'node:timers/promises';
import { CriClient } from '../client/cri-client.ts';
import { errorMessage } from '../util/errors.ts';

interface VersionResponse {
  runtime_version?: string;
}
interface StatusResponse {
  status?: { conditions?: Array<{ type?: string; status?: boolean; reason?: string; message?: string }> };
}

/** Polls until healthy or `timeoutMs` passes; returns undefined when healthy, else the last reason. */
export async function waitHealthy(socket: string, version: string, timeoutMs: number, signal?: AbortSignal): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  let why = 'no answer yet';
  const client = new CriClient(socket);
  try {
    for (;;) {
      // Each call gets at least a second, so the last reason is an answer, not our own deadline.
      why = await check(client, version, Math.min(5_000, Math.max(1_000, deadline - Date.now())), signal);
      if (why === '') return undefined;
      signal?.throwIfAborted();
      if (Date.now() >= deadline) return why;
      await delay(Math.min(500, Math.max(1, deadline - Date.now())), undefined, { signal });
    }
  } finally {
    client.close();
  }
}

async function check(client: CriClient, version: string, timeoutMs: number, signal?: AbortSignal): Promise<string> {
  try {
    const v = await client.call<VersionResponse>('runtime', 'Version', {}, { timeoutMs, signal });
    if (v.runtime_version !== version) return `berthd ${v.runtime_version ?? '?'} answers, not ${version}`;
    const s = await client.call<StatusResponse>('runtime', 'Status', {}, { timeoutMs, signal });
    const ready = s.status?.conditions?.find((c) => c.type === 'RuntimeReady');
    if (!ready?.status) return `RuntimeReady is not true${ready?.message ? `: ${ready.message}` : ''}`;
    return '';
  } catch (err) {
    return errorMessage(err);
  }
}
