// The floor under a cold pull on Node: what the bench image's pull costs when nothing but the
// irreducible work runs, in the best shape Node allows. Threads (one per core) take the layers
// biggest first; each fetches its layer over HTTP from the same registry the runtimes use, hashes
// and stores the compressed bytes, inflates them with Node's zlib, hashes the tar (the diff ID)
// and writes its entries from the inflated chunks: one open, write(s), futimes and close per file,
// chown/chmod only where the owner or mode needs them, directory mtimes last. No validation of
// hostile input, no crash safety, no cross-thread copies, no records. It estimates the floor, not
// a strict bound: its threads run with V8's default GC, so it varies run to run (0.84-1.16 s in one
// 3-run bench on the 2-core VM) and a tuned runtime can land at it or just under. Its ratio to
// containerd says how far below containerd any Node pull can get here. pull-floor-worker.ts holds
// the per-thread work.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import type { FloorIn, FloorLayer, FloorOut } from './pull-floor-worker.ts';

const WORKER_URL = new URL('./pull-floor-worker.ts', import.meta.url);

export interface FloorImage {
  registryUrl: string;
  repo: string;
  layers: ReadonlyArray<{ digest: string; size: number; diffId: string }>;
}

export interface FloorResult {
  seconds: number;
  entries: number;
  /** CPU seconds this process used during the pull (every thread, libuv's pool included). */
  cpuSeconds: number;
}

/** Pulls `image` once into a fresh temp dir (removed afterwards); `before` runs once the threads are up, untimed (e.g. dropping caches). */
export async function floorPull(image: FloorImage, before: () => Promise<void>, threads = availableParallelism()): Promise<FloorResult> {
  const base = await mkdtemp(join(tmpdir(), 'bench-floor-'));
  // The same ext4 top-directory hint the runtimes' snapshot dirs get.
  spawnSync('chattr', ['+T', base], { stdio: 'ignore' });
  const workers = Array.from({ length: Math.min(threads, image.layers.length) }, () => new Worker(WORKER_URL));
  try {
    await Promise.all(workers.map((w) => next(w)));
    const jobs: FloorLayer[] = [];
    for (const [i, l] of [...image.layers].sort((a, b) => b.size - a.size).entries()) {
      const dir = join(base, `layer-${i}`);
      await mkdir(dir);
      jobs.push({ url: `${image.registryUrl}/v2/${image.repo}/blobs/${l.digest}`, digest: l.digest, diffId: l.diffId, blobPath: join(base, `blob-${i}`), dir });
    }
    await before();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let entries = 0;
    await Promise.all(workers.map(async (w) => {
      for (let job = jobs.shift(); job; job = jobs.shift()) {
        w.postMessage({ type: 'layer', layer: job } satisfies FloorIn);
        const out = await next(w);
        if (out.type === 'error') throw new Error(`pull floor: ${out.message}`);
        if (out.type === 'done') entries += out.entries;
      }
    }));
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    return { seconds, entries, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
    await rm(base, { recursive: true, force: true });
  }
}

function next(worker: Worker): Promise<FloorOut> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      worker.off('message', onMessage);
      reject(err);
    };
    const onMessage = (msg: FloorOut): void => {
      worker.off('error', onError);
      resolve(msg);
    };
    worker.once('message', onMessage);
    worker.once('error', onError);
  });
}
