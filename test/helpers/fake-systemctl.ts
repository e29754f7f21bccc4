// A stand-in for the host's systemctl in installer tests (there is no systemd to drive here):
// records each call, and for berthd.service runs what the unit file under the host root says —
// a real berthd — with its paths moved under the host root. Usage (as the installer's
// --systemctl): node fake-systemctl.ts HOST_ROOT LOG_FILE <systemctl args…>
// With FAKE_SYSTEMCTL_KILL_INSTALLER_ON=<verb>, that call kills the installer (SIGKILL) first, to
// test that a run killed at that step converges when run again.
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [hostRoot = '', logFile = '', ...args] = process.argv.slice(2);
appendFileSync(logFile, `${args.join(' ')}\n`);
if (process.env.FAKE_SYSTEMCTL_KILL_INSTALLER_ON === args[0]) process.kill(process.ppid, 'SIGKILL');

const pidFile = join(hostRoot, 'run/fake-systemd-berthd.pid');
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const running = (): number | undefined => {
  const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : NaN;
  return Number.isInteger(pid) && alive(pid) ? pid : undefined;
};

function stop(): void {
  const pid = running();
  if (pid === undefined) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 15_000;
  while (alive(pid) && Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
  if (alive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(pidFile, { force: true });
}

function start(): void {
  if (running() !== undefined) return;
  const unit = readFileSync(join(hostRoot, 'etc/systemd/system/berthd.service'), 'utf8');
  const exec = /^ExecStart=(.+)$/m.exec(unit)?.[1];
  if (!exec) throw new Error('berthd.service has no ExecStart');
  const argv = exec.split(/\s+/).map((a) => (a.startsWith('/opt/') || a.startsWith('/etc/') ? join(hostRoot, a) : a));
  mkdirSync(join(hostRoot, 'run/berth'), { recursive: true });
  mkdirSync(join(hostRoot, 'var/log'), { recursive: true });
  const out = openSync(join(hostRoot, 'var/log/berthd.log'), 'a');
  const child = spawn(argv[0] as string, [...argv.slice(1), '--root', join(hostRoot, 'var/lib/berth'), '--state', join(hostRoot, 'run/berth'), '--socket', join(hostRoot, 'run/berth/berth.sock')], {
    detached: true,
    stdio: ['ignore', out, out],
  });
  writeFileSync(pidFile, String(child.pid));
  child.unref();
}

const [verb, ...rest] = args;
const unitNamed = rest.includes('berthd.service');
if (verb === 'restart' && unitNamed) {
  stop();
  start();
} else if (verb === 'start' && unitNamed) {
  start();
} else if ((verb === 'stop' || (verb === 'disable' && rest.includes('--now'))) && unitNamed) {
  stop();
}
