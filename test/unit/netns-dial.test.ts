// Port-forward's way into a pod: connections dialled inside a real network namespace (made with
// `ip netns`), handed back to this process, with a refused port reported, not hung.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { NetnsDialer } from '../../src/streaming/netns-dial.ts';

const root = process.getuid?.() === 0;
const name = `berth-st-${randomBytes(3).toString('hex')}`;
const netns = `/run/netns/${name}`;
let server: ChildProcess | undefined;
const dialer = new NetnsDialer();
const PORT = 8080;

before(async () => {
  if (!root) return;
  execFileSync('ip', ['netns', 'add', name]);
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  // An echo server that exists only inside the namespace. A client that hangs up while its echo is
  // still being written is that connection's error only: unhandled, it would take the server (and
  // the other test sockets) down with an EPIPE/ECONNRESET.
  const script = `require('net').createServer((s) => { s.on('error', () => s.destroy()); s.pipe(s); }).listen(${PORT}, '127.0.0.1', () => console.log('ready'))`;
  server = spawn('nsenter', [`--net=${netns}`, '--', process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    server?.stdout?.once('data', () => resolve());
    server?.once('exit', (code) => reject(new Error(`namespace echo server exited (${code})`)));
  });
});

after(() => {
  dialer.close();
  server?.kill('SIGKILL');
  if (root) execFileSync('ip', ['netns', 'del', name]);
});

test('dials a port that only exists inside the namespace, many times over one helper', { skip: !root && 'needs root (ip netns)' }, async () => {
  const signal = new AbortController().signal;
  const sockets = await Promise.all([1, 2, 3].map(() => dialer.dial(netns, PORT, signal)));
  for (const [i, s] of sockets.entries()) {
    const echoed = new Promise<string>((resolve) => s.once('data', (c: Buffer) => resolve(c.toString())));
    s.write(`hello ${i}`);
    assert.equal(await echoed, `hello ${i}`);
    s.destroy();
  }
});

test('a refused port is an error naming the port', { skip: !root && 'needs root (ip netns)' }, async () => {
  const signal = new AbortController().signal;
  await assert.rejects(dialer.dial(netns, PORT + 1, signal), /ECONNREFUSED 127\.0\.0\.1:8081 in the pod's network namespace/);
});

test('a namespace that does not exist fails the dial with the helper error', { skip: !root && 'needs root (ip netns)' }, async () => {
  const signal = new AbortController().signal;
  await assert.rejects(dialer.dial('/run/netns/berth-no-such-ns', PORT, signal), /port-forward helper for \/run\/netns\/berth-no-such-ns exited/);
});
