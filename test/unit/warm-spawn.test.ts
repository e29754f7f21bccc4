// WarmSpawner: commands started through a shell forked ahead of time behave like a plain spawn
// (arguments, stdio, exit code, pid), the next command finds a shell already waiting, and
// nothing is left running after close() or after berthd dies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { spawn, type ChildProcess } from 'node:child_process';
import { WarmSpawner } from '../../src/util/warm-spawn.ts';
import { collect } from '../helpers/streaming-client.ts';
import { until } from '../helpers/poll.ts';

const SH = '/bin/sh';

/** Our own children's PIDs and names. */
async function children(): Promise<Map<number, string>> {
  const pids = (await readFile(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8')).trim().split(/\s+/).filter(Boolean).map(Number);
  const out = new Map<number, string>();
  for (const pid of pids) out.set(pid, (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim());
  return out;
}

async function run(child: ChildProcess, input?: string): Promise<{ out: string; err: string; code: number | null }> {
  const closed = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  child.stdin?.end(input);
  const [out, err] = await Promise.all([collect(child.stdout!), collect(child.stderr!)]);
  return { out: out.toString(), err: err.toString(), code: await closed };
}

test('warm-started commands get their exact arguments, stdio and exit code, and the next one finds a shell waiting', async (t) => {
  const spawner = new WarmSpawner();
  t.after(() => spawner.close());
  const tricky = ['a b', ' lead', 'trail ', 'back\\slash', '$HOME', '"quoted"', "'single'", '*', '-n'];
  const script = 'printf "%s|" "$@"; cat; echo to-stderr >&2; exit 7';
  for (let i = 0; i < 3; i++) {
    const before = await children();
    const child = spawner.spawn(SH, ['-c', script, 'sh', ...tricky]);
    // From the second command on, the command runs in the shell that was already waiting.
    if (i > 0) assert.equal(before.get(child.pid as number), 'sh', `command ${i} should reuse the waiting shell`);
    const r = await run(child, `input ${i}`);
    assert.deepEqual(r, { out: `${tricky.join('|')}|input ${i}`, err: 'to-stderr\n', code: 7 });
  }
});

test('a command becomes the waiting process itself (same pid, no shell left in between)', async (t) => {
  const spawner = new WarmSpawner();
  t.after(() => spawner.close());
  await run(spawner.spawn(SH, ['-c', 'true']));
  const child = spawner.spawn('/bin/sleep', ['30']);
  t.after(() => child.kill('SIGKILL'));
  await until('the waiting shell to become sleep', async () => (await readFile(`/proc/${child.pid}/comm`, 'utf8')).trim() === 'sleep');
  child.kill('SIGKILL');
  const { signal } = await new Promise<{ signal: string | null }>((resolve) => child.once('exit', (_c, s) => resolve({ signal: s })));
  assert.equal(signal, 'SIGKILL');
});

test('an argument the line protocol cannot carry goes through a plain spawn and still arrives intact', async (t) => {
  const spawner = new WarmSpawner();
  t.after(() => spawner.close());
  await run(spawner.spawn(SH, ['-c', 'true']));
  for (const odd of ['two\nlines', '']) {
    const r = await run(spawner.spawn(SH, ['-c', 'printf "[%s]" "$1"', 'sh', odd]));
    assert.deepEqual(r, { out: `[${odd}]`, err: '', code: 0 });
  }
});

test('close() ends the waiting shell', async () => {
  const spawner = new WarmSpawner();
  await run(spawner.spawn(SH, ['-c', 'true']));
  const waiting = [...(await children())].filter(([, comm]) => comm === 'sh').map(([pid]) => pid);
  assert.equal(waiting.length, 1, 'one shell should be waiting for the next command');
  spawner.close();
  await until('the waiting shell to go', async () => !(await children()).has(waiting[0] as number));
});

test('a waiting shell exits when berthd dies without closing it', async (t) => {
  // A stand-in for berthd: warms a shell, reports the shell's pid, then is killed outright.
  const script = `
    import { readFileSync } from 'node:fs';
    import { WarmSpawner } from ${JSON.stringify(new URL('../../src/util/warm-spawn.ts', import.meta.url).pathname)};
    const s = new WarmSpawner();
    s.spawn('/bin/true', []).once('exit', () => {
      const kids = readFileSync('/proc/' + process.pid + '/task/' + process.pid + '/children', 'utf8').trim().split(/\\s+/);
      console.log(kids.find((p) => readFileSync('/proc/' + p + '/comm', 'utf8').trim() === 'sh'));
    });`;
  const fake = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => fake.kill('SIGKILL'));
  let out = '';
  fake.stdout.on('data', (c: Buffer) => (out += c.toString()));
  await until('the stand-in to report its waiting shell', () => /^\d+\n/.test(out));
  const shell = Number(out.trim());
  fake.kill('SIGKILL');
  await until('the orphaned waiting shell to exit', async () => {
    const stat = await readFile(`/proc/${shell}/stat`, 'utf8').catch(() => '');
    // Gone, or a zombie waiting for its new parent to reap it.
    return stat === '' || / Z /.test(stat);
  });
});
