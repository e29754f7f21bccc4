// A real distribution registry (Debian's `docker-registry`) on a free 127.0.0.1 port, for tests and
// benchmarks. Each instance has its own temp storage and is torn down by stop().
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface RegistryOptions {
  /** Extra YAML appended under the top level of the registry config. */
  extraConfig?: string;
  /** Require HTTP Basic auth (htpasswd) with this one user. */
  basicAuth?: { user: string; password: string };
}

/** bcrypt line for an htpasswd file, from the system's crypt(3) through perl (libxcrypt does bcrypt). */
function htpasswdLine(user: string, password: string): string {
  const alphabet = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = randomBytes(22);
  let salt = '';
  for (let i = 0; i < 21; i++) salt += alphabet[(bytes[i] ?? 0) % 64];
  salt += '.Oeu'[(bytes[21] ?? 0) % 4]; // the last salt character carries only 2 bits
  const hash = execFileSync('perl', ['-e', 'print crypt($ARGV[0], $ARGV[1])', password, `$2b$05$${salt}`]).toString();
  if (!/^\$2b\$05\$.{53}$/.test(hash)) throw new Error('crypt(3) here does not do bcrypt; the registry needs it for htpasswd');
  return `${user}:${hash}\n`;
}

export interface TestRegistry {
  /** `127.0.0.1:PORT` — the registry host as it appears in image references. */
  host: string;
  port: number;
  url: string;
  dir: string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export async function startRegistry(options: RegistryOptions = {}): Promise<TestRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-registry-'));
  const port = await freePort();
  const config = [
    'version: 0.1',
    'log: {level: error}',
    `storage: {filesystem: {rootdirectory: ${join(dir, 'data')}}, delete: {enabled: true}}`,
    `http: {addr: "127.0.0.1:${port}"}`,
    options.extraConfig ?? '',
  ].join('\n');
  await writeFile(join(dir, 'config.yml'), config);
  if (options.basicAuth) {
    const file = join(dir, 'htpasswd');
    await writeFile(file, htpasswdLine(options.basicAuth.user, options.basicAuth.password));
    await writeFile(join(dir, 'config.yml'), `${config}\nauth: {htpasswd: {realm: berth-test, path: ${file}}}\n`);
  }
  const child: ChildProcess = spawn('docker-registry', ['serve', join(dir, 'config.yml')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) break;
    try {
      const res = await fetch(`${url}/v2/`);
      await res.body?.cancel();
      if (res.status === 200 || res.status === 401) return { host: `127.0.0.1:${port}`, port, url, dir, stop };
    } catch {
      // not listening yet
    }
    await sleep(50);
  }
  await stop();
  throw new Error(`docker-registry did not start on port ${port}: ${stderr}`);
}
