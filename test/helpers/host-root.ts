// A fake node for berth-install: a temp host root, a staged release (bin/node, lib/), and a
// stand-in for the host's systemctl/systemd-run that records each call, one line per call.
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BERTH_INSTALL = fileURLToPath(new URL('../../bin/berth-install.js', import.meta.url));

export interface FakeHost {
  dir: string;
  root: string;
  source: string;
  /** systemctl / systemd-run calls so far, e.g. `systemctl restart berthd.service`. */
  calls(): Promise<string[]>;
  /** Runs bin/berth-install.js with these args (plus --host-root and the recorder). */
  run(args: string[], env?: Record<string, string>): Promise<{ code: number | null; signal: string | null; stderr: string }>;
  dispose(): Promise<void>;
}

export async function fakeHost(): Promise<FakeHost> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-install-test-'));
  const root = join(dir, 'host');
  const source = join(dir, 'release');
  const log = join(dir, 'calls.log');
  const recorder = join(dir, 'host-exec.sh');
  await mkdir(root, { recursive: true });
  await mkdir(join(source, 'bin'), { recursive: true });
  await mkdir(join(source, 'lib', 'proto'), { recursive: true });
  await writeFile(join(source, 'bin', 'node'), '#!/bin/sh\necho fake node\n', { mode: 0o755 });
  await writeFile(join(source, 'lib', 'berthd.js'), '// berthd bundle\n');
  await writeFile(join(source, 'lib', 'proto', 'api.proto'), 'syntax = "proto3";\n');
  await writeFile(recorder, `#!/bin/sh\necho "$*" >> '${log}'\n`);
  await chmod(recorder, 0o755);
  return {
    dir,
    root,
    source,
    calls: async () => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter((l) => l !== ''),
    run: (args, env = {}) =>
      new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [BERTH_INSTALL, ...args, '--host-root', root, '--host-exec', recorder], {
          stdio: ['ignore', 'ignore', 'pipe'],
          env: { ...process.env, ...env },
        });
        let stderr = '';
        child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
        child.once('error', reject);
        child.once('close', (code, signal) => resolve({ code, signal, stderr }));
      }),
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
}
