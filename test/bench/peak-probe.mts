import { spawn } from 'node:child_process';
import { mkdtemp, readFile, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CriClient } from '../../src/client/cri-client.ts';
import { startRegistry } from '../helpers/registry.ts';
import { bigImage, pushImage } from '../helpers/images.ts';
import { BERTHD } from '../helpers/daemon.ts';
const registry = await startRegistry();
const img = await bigImage({ scale: 1, seed: 'bench' });
await pushImage(registry.url, 'bench/big', 'v1', img);
const variants: Array<[string, Record<string, string>, string]> = JSON.parse(process.argv[2] ?? '[]');
for (const [name, env, toml] of variants) {
  const dir = await mkdtemp(join(tmpdir(), 'peak-'));
  await writeFile(join(dir, 'c.toml'), toml);
  const child = spawn(process.execPath, [BERTHD, '--config', join(dir, 'c.toml'), '--root', join(dir, 'root'), '--state', join(dir, 'state'), '--socket', join(dir, 's.sock'), '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...env } });
  const c = new CriClient(join(dir, 's.sock'));
  for (;;) { try { await c.call('runtime', 'Version', {}, { timeoutMs: 1000 }); break; } catch { await sleep(50); } }
  await sleep(1500);
  const st = async (f: string) => Number(new RegExp(`${f}:\\s+(\\d+)`).exec(await readFile(`/proc/${child.pid}/status`, 'utf8'))?.[1]) / 1024;
  const idle = await st('VmRSS');
  let max = 0;
  const sampler = setInterval(() => { void st('VmRSS').then((v) => { max = Math.max(max, v); }); }, 50);
  const t0 = Date.now();
  await c.call('image', 'PullImage', { image: { image: `${registry.host}/bench/big:v1` } }, { timeoutMs: 600_000 });
  const secs = (Date.now() - t0) / 1000;
  clearInterval(sampler);
  const hwm = await st('VmHWM');
  const end = await st('VmRSS');
  await sleep(10_000);
  const after10 = await st('VmRSS');
  console.log(`${name.padEnd(30)} idle ${idle.toFixed(0)} pull ${secs.toFixed(2)}s hwm ${hwm.toFixed(0)} sampledmax ${max.toFixed(0)} end ${end.toFixed(0)} +10s ${after10.toFixed(0)}`);
  c.close(); child.kill('SIGTERM'); await new Promise((r) => child.once('exit', r));
  await rm(dir, { recursive: true, force: true });
}
await img.cleanup(); await registry.stop();
