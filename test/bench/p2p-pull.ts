// p2p benchmark: a cold pull of the pull-benchmark image (~100 MB gzip, 7 layers, ~10k files) by a
// berthd whose peer already has it, against the same pull by a berthd that fetches from the
// registry (p2p off), same machine, alternating. Also counts the blobs the p2p node got from its
// peer (from its debug log), so a run that silently fell back to the registry shows. Not a test.
//
//   node --import tsx test/bench/p2p-pull.ts [--runs N] [--scale S]
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startRegistry, freePort } from '../helpers/registry.ts';
import { bigImage, pushImage } from '../helpers/images.ts';
import { startDaemon, type TestDaemon } from '../helpers/daemon.ts';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, scale: { type: 'string', default: '1' } } });
const RUNS = Number(values.runs);

async function dropCaches(): Promise<void> {
  spawnSync('sync');
  await writeFile('/proc/sys/vm/drop_caches', '3').catch(() => undefined);
}

async function timedPull(d: TestDaemon, ref: string): Promise<number> {
  await dropCaches();
  const t0 = process.hrtime.bigint();
  await d.client.call('image', 'PullImage', { image: { image: ref } }, { timeoutMs: 600_000 });
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

const img = await bigImage({ scale: Number(values.scale), seed: 'bench' });
const registry = await startRegistry();
const work = await mkdtemp(join(tmpdir(), 'bench-p2p-'));
try {
  await pushImage(registry.url, 'bench/big', 'v1', img);
  const ref = `${registry.host}/bench/big:v1`;
  const [portA, portB] = [await freePort(), await freePort()];
  // The seed node: pulls from the registry once and serves what it has.
  const seed = await startDaemon({ logLevel: 'warn', config: `[p2p]\nlisten = "127.0.0.2:${portA}"\npeers = ["127.0.0.3:${portB}"]\n` });
  const fromPeer: number[] = [];
  const fromRegistry: number[] = [];
  try {
    await seed.client.call('image', 'PullImage', { image: { image: ref } }, { timeoutMs: 600_000 });
    for (let run = 1; run <= RUNS; run++) {
      const log = join(work, `p2p-${run}.log`);
      const p2p = (): Promise<TestDaemon> => startDaemon({ logLevel: 'debug', logFile: log, config: `[p2p]\nlisten = "127.0.0.3:${portB}"\npeers = ["127.0.0.2:${portA}"]\n` });
      const plain = (): Promise<TestDaemon> => startDaemon({ logLevel: 'warn', showLogs: true });
      // Alternate which goes first, so neither always meets a cache the other warmed.
      for (const which of run % 2 === 1 ? ['peer', 'registry'] : ['registry', 'peer']) {
        const d = await (which === 'peer' ? p2p() : plain());
        try {
          const s = await timedPull(d, ref);
          (which === 'peer' ? fromPeer : fromRegistry).push(s);
        } finally {
          await d.dispose();
        }
      }
      const peerBlobs = (await readFile(log, 'utf8')).split('\n').filter((l) => l.includes('p2p: blob fetched from a peer')).length;
      console.log(`run ${run}: from a peer ${fromPeer.at(-1)?.toFixed(2)} s (${peerBlobs} of ${img.layers.length + 1} blobs from the peer), from the registry ${fromRegistry.at(-1)?.toFixed(2)} s`);
    }
  } finally {
    await seed.dispose();
  }
  console.log(`median of ${RUNS}: from a peer ${median(fromPeer).toFixed(2)} s, from the registry ${median(fromRegistry).toFixed(2)} s, ratio ${(median(fromPeer) / median(fromRegistry)).toFixed(2)}x`);
} finally {
  await registry.stop();
  await img.cleanup();
  await rm(work, { recursive: true, force: true });
}
