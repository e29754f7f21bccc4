// Terminals from util-linux script: a process gets a real tty, resize reaches it, and a mirror
// terminal hands out each newline as exactly one CRLF, however the process wrote it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Pty } from '../../src/streaming/pty.ts';

async function run(pty: Pty, argv: string[], before?: (proc: ReturnType<typeof spawn>) => Promise<void>): Promise<string> {
  const fd = pty.slave.fd;
  const proc = spawn(argv[0] as string, argv.slice(1), { stdio: [fd, fd, fd] });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  await pty.slave.close();
  const chunks: Buffer[] = [];
  pty.output.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise<void>((resolve) => pty.output.once('end', () => resolve()));
  await before?.(proc);
  await exited;
  await pty.close();
  await ended;
  return Buffer.concat(chunks).toString();
}

test('a process on the terminal sees a tty, and its newlines come out as CRLF', async () => {
  const pty = await Pty.open(new AbortController().signal);
  const out = await run(pty, ['sh', '-c', 'tty; echo done']);
  assert.match(out, /^\/dev\/pts\/\d+\r\ndone\r\n$/);
});

test('resize sets the window size the process reads', async () => {
  const pty = await Pty.open(new AbortController().signal);
  const out = await run(pty, ['sh', '-c', 'read go; stty size'], async () => {
    await pty.resize({ width: 91, height: 27 }, undefined);
    pty.input.write('go\n');
  });
  assert.match(out, /27 91\r\n$/);
});

test('a mirror terminal turns bare LF into CRLF and leaves CRLF alone, across writes', async () => {
  const pty = await Pty.open(new AbortController().signal, { mirror: true });
  const out = await run(pty, ['sh', '-c', "printf 'a\\nb\\r'; sleep 0.1; printf '\\nc\\r\\n\\n'"]);
  assert.equal(out, 'a\r\nb\r\nc\r\n\r\n');
});
