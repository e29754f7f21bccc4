// berthd's side of the exec helper's wire (src/container/exec-helper.ts) against a peer that
// sends what a hostile container could make its helper send: every bad frame fails that exec with
// a clear error (never a crash, a hang or an unbounded buffer); good frames give output and the
// exit code. The peer is a plain unix socket: only the wire is faked, berthd's code is real.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HelperExec } from '../../src/container/exec-helper.ts';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function frame(type: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(5);
  head[0] = type;
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

/** A HelperExec connected to a peer that answers the header with `reply`; also what the peer received. */
async function session(reply: (peer: Socket) => void, args = ['echo', 'hi'], opts = { tty: false, stdin: true }): Promise<{ h: HelperExec; received: Promise<Buffer> }> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-helper-wire-'));
  dirs.push(dir);
  const path = join(dir, 's.sock');
  let received!: Promise<Buffer>;
  const server = createServer((peer) => {
    received = new Promise((resolve) => {
      const chunks: Buffer[] = [];
      peer.on('data', (c: Buffer) => chunks.push(c));
      peer.on('close', () => resolve(Buffer.concat(chunks)));
      peer.on('error', () => {});
    });
    reply(peer);
  });
  await new Promise<void>((r) => server.listen(path, r));
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = connect(path, () => resolve(s));
    s.once('error', reject);
  });
  const h = new HelperExec(socket, 'c1', args, opts);
  void h.exit.catch(() => {}).finally(() => server.close());
  return { h, get received() { return received; } };
}

test('good frames: output in order, exit code, and the header as the helper parses it', async () => {
  const { h, received } = await session((peer) => {
    peer.write(Buffer.concat([frame(16, u32(7)), frame(18, Buffer.from('out')), frame(19, Buffer.from('err')), frame(18, Buffer.from('put'))]));
    peer.write(frame(20, u32(3)));
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  h.stdout.on('data', (c: Buffer) => out.push(c));
  h.stderr.on('data', (c: Buffer) => err.push(c));
  h.resize({ width: 80, height: 24 });
  assert.equal(await h.exit, 3);
  assert.equal(Buffer.concat(out).toString(), 'output');
  assert.equal(Buffer.concat(err).toString(), 'err');
  const got = await received;
  // HEADER: flags (2 = stdin), rows, cols, argv NUL-terminated.
  assert.deepEqual(got.subarray(0, 5 + 5 + 8), frame(1, Buffer.concat([Buffer.from([2, 0, 0, 0, 0]), Buffer.from('echo\0hi\0')])));
});

test('a command that cannot be executed: exit 255 and runc\'s wording on stderr', async () => {
  const { h } = await session((peer) => peer.write(frame(17, u32(2))), ['nope']);
  const err: Buffer[] = [];
  h.stderr.on('data', (c: Buffer) => err.push(c));
  await h.started;
  assert.equal(await h.exit, 255);
  assert.match(Buffer.concat(err).toString(), /exec: "nope": executable file not found in \$PATH/);
});

const bad: Array<[string, Buffer, RegExp]> = [
  ['an oversized frame', Buffer.concat([frame(16, u32(1)), Buffer.from([18, 0x7f, 0xff, 0xff, 0xff])]), /frame of \d+ bytes/],
  ['output before the start', frame(18, Buffer.from('x')), /unexpected frame/],
  ['an unknown type', Buffer.concat([frame(16, u32(1)), frame(99)]), /unexpected frame \(type 99/],
  ['an exit status out of range', Buffer.concat([frame(16, u32(1)), frame(20, u32(1000))]), /unexpected frame \(type 20/],
  ['an exit with a short payload', Buffer.concat([frame(16, u32(1)), frame(20, Buffer.from([0]))]), /unexpected frame/],
  ['a second start', Buffer.concat([frame(16, u32(1)), frame(16, u32(1))]), /unexpected frame/],
];
for (const [what, bytes, why] of bad) {
  test(`${what} fails the exec with a clear error`, async () => {
    const { h } = await session((peer) => peer.write(bytes));
    await assert.rejects(h.exit, (err: Error) => why.test(err.message) && /exec in container c1/.test(err.message));
  });
}

test('a helper that cannot serve, or leaves before the start, rejects `started` (the exec then goes to the runtime)', async () => {
  const unusable = await session((peer) => peer.write(frame(21, u32(1))));
  await assert.rejects(unusable.h.started, /cannot start processes here: operation not permitted/i);
  const gone = await session((peer) => peer.destroy());
  await assert.rejects(gone.h.started, /went away|connection failed/);
});

test('a helper that leaves mid-command fails the exec', async () => {
  const { h } = await session((peer) => {
    peer.write(frame(16, u32(1)));
    peer.write(frame(18, Buffer.from('partial')), () => peer.destroy());
  });
  await assert.rejects(h.exit, /went away before the command exited|connection failed/);
});
