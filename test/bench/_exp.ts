import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CriClient } from '../../src/client/cri-client.ts';
import { startRegistry } from '../helpers/registry.ts';
import { bigImage, pushImage } from '../helpers/images.ts';
import { BERTHD } from '../helpers/daemon.ts';
const registry = await startRegistry();
const img = await bigImage({ scale: 1, seed: 'bench' });
await pushImage(registry.url, 'bench/big', 'v1', img);
const extra = (process.env.NODEARGS ?? '').split(' ').filter(Boolean);
for (let i = 0; i < Number(process.env.RUNS ?? 2); i++) {
  const dir = await mkdtemp('/tmp/exp/b-');
  await writeFile(join(dir, 'c.toml'), '');
  const child = spawn(process.execPath, [...extra, BERTHD, '--config', join(dir, 'c.toml'), '--root', join(dir, 'root'), '--state', join(dir, 'state'), '--socket', join(dir, 's.sock'), '--log-level', 'debug'], { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir });
  let log = ''; child.stderr!.on('data', (c) => (log += c));
  const client = new CriClient(join(dir, 's.sock'));
  for (;;) { try { await client.call('runtime', 'Version', {}, { timeoutMs: 500 }); break; } catch { await sleep(50); } }
  (await import('node:child_process')).spawnSync('sync'); if (process.env.DROP) await writeFile('/proc/sys/vm/drop_caches', '3');
  const cpu = async () => { const f = (await readFile(`/proc/${child.pid}/stat`, 'utf8')).split(') ')[1]!.split(' '); return (Number(f[11]) + Number(f[12])) * 10; };
  const c0 = await cpu();
  const t0 = Date.now();
  await client.call('image', 'PullImage', { image: { image: `${registry.host}/bench/big:v1` } });
  console.log('pull ms', Date.now() - t0, 'cpu ms', (await cpu()) - c0);
  for (const l of log.split('\n')) if (/layer|pulled/.test(l)) console.log(l.slice(0, 300));
  client.close(); child.kill('SIGTERM'); await new Promise((r) => child.once('exit', r));
  await rm(dir, { recursive: true, force: true, maxRetries: 3 }).catch(() => {});
}
await img.cleanup(); await registry.stop();
