// berth-controller refuses bad flags with exit 2 and a message naming the flag, never a crash.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { CONTROLLER } from '../helpers/controller.ts';

const run = (...args: string[]) => spawnSync(process.execPath, [CONTROLLER, ...args], { encoding: 'utf8', timeout: 30_000 });

test('bad roles, missing node names and malformed tuning are refused', () => {
  const cases: [string[], RegExp][] = [
    [[], /--role must be node-agent or aggregator/],
    [['--role', 'agent'], /--role must be node-agent or aggregator/],
    [['--role', 'node-agent'], /--node-name is required/],
    [['--role', 'aggregator', '--backoff-ms', '900-100'], /--backoff-ms must be MIN-MAX/],
    [['--role', 'aggregator', '--health-addr', 'localhost'], /--health-addr must be HOST:PORT/],
    [['--role', 'aggregator', '--bogus'], /Unknown option '--bogus'/],
    [['--role', 'node-agent', '--node-name', 'n', '--p2p-peers', ' , '], /--p2p-peers must name at least one DNS name/],
    [['--role', 'node-agent', '--node-name', 'n', '--p2p-peers', 'berth-p2p', '--p2p-port', '70000'], /--p2p-port must be a port number/],
    // Host installation is berth-install's job (src/installer), not the controller's.
    [['install'], /Unexpected argument 'install'/],
  ];
  for (const [args, message] of cases) {
    const r = run(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  const help = run('--help');
  assert.equal(help.status, 0);
  assert.match(help.stdout, /--role ROLE/);
});
