// Fuzzing the tar reader: valid layers (PAX records, GNU long names, links, dirs, a large file)
// are mutated in their headers, PAX records, sizes and names for a fixed number of seeded rounds.
// Every round must end in a clean rejection (a BerthError) or a tree wholly inside the target,
// never a crash, a hang or a write outside: a canary directory beside the target must not change.
// BERTH_FUZZ_ROUNDS=N runs more rounds (the default keeps the suite quick).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pack, type Header } from 'tar-stream';
import { unpackLayer } from '../../src/snapshot/unpack.ts';
import { BerthError } from '../../src/util/errors.ts';
import { ROOT_ONLY } from '../helpers/root.ts';

const ROUNDS = Number(process.env.BERTH_FUZZ_ROUNDS ?? 1000);
/** A round that takes longer than this is a hang (each layer is a few KB). */
const ROUND_LIMIT_MS = 10_000;

type Entry = Partial<Header> & { name: string; data?: string | Buffer };

async function tarOf(entries: Entry[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => chunks.push(c as Buffer));
  const ended = new Promise<void>((resolve) => p.once('end', () => resolve()));
  for (const { data, ...header } of entries) {
    await new Promise<void>((resolve, reject) => p.entry(header, data ?? '', (err) => (err ? reject(err) : resolve())));
  }
  p.finalize();
  await ended;
  return Buffer.concat(chunks);
}

/** Small deterministic PRNG (mulberry32), so a failing round can be replayed from its number. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEEDS: Entry[][] = [
  [
    { name: 'etc', type: 'directory', mode: 0o755 },
    { name: 'etc/passwd', data: 'root:x:0:0::/root:/bin/sh\n', mode: 0o644 },
    { name: 'bin/sh', type: 'symlink', linkname: '/bin/busybox' },
    { name: 'bin/busybox', data: Buffer.alloc(3000, 7), mode: 0o755 },
    { name: 'bin/ash', type: 'link', linkname: 'bin/busybox' },
    { name: 'home/user', type: 'directory', mode: 0o700, uid: 1000, gid: 1000 },
  ],
  [
    { name: `deep/${'long-name-'.repeat(20)}/file`, data: 'long', pax: { 'SCHILY.xattr.user.note': 'hello', mtime: '1234567890.5' } },
    { name: 'var/.wh.cache', data: '' },
    { name: 'opt/.wh..wh..opq', data: '' },
    { name: 'opt/app', data: 'app', uid: 3000000, gid: 3000001 },
  ],
  [
    { name: 'a', type: 'directory' },
    { name: 'a/b', type: 'symlink', linkname: '../../outside' },
    { name: 'big', data: Buffer.alloc(70_000, 1) },
    { name: 'fifo', type: 'fifo', mode: 0o600 },
  ],
];

type Mutation = (tar: Buffer, rnd: () => number) => Buffer;
const pick = <T>(xs: readonly T[], rnd: () => number): T => xs[Math.floor(rnd() * xs.length)] as T;
/** Offsets of every header block (a block whose checksum field parses), found by walking the sizes. */
function headerOffsets(tar: Buffer): number[] {
  const out: number[] = [];
  for (let off = 0; off + 512 <= tar.length; ) {
    const block = tar.subarray(off, off + 512);
    if (block.every((b) => b === 0)) break;
    out.push(off);
    const size = parseInt(block.toString('latin1', 124, 136).replace(/\0.*$/, '').trim() || '0', 8) || 0;
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}
function withChecksum(tar: Buffer, off: number): void {
  tar.fill(0x20, off + 148, off + 156);
  let sum = 0;
  for (let i = off; i < off + 512; i++) sum += tar[i] ?? 0;
  tar.write(`${sum.toString(8).padStart(6, '0')}\0 `, off + 148, 'latin1');
}
const FIELDS: Array<[number, number]> = [[0, 100], [100, 8], [108, 8], [116, 8], [124, 12], [136, 12], [156, 1], [157, 100], [257, 8], [329, 8], [337, 8], [345, 155]];
const NASTY = ['../', '../../etc/x', '/abs', 'a/../../b', '.', '..', '', 'a//b/', '\0', 'x'.repeat(120), '.wh.', '.wh..wh..opq', 'bin/sh/x'];

const MUTATIONS: Record<string, Mutation> = {
  'random bytes anywhere': (tar, rnd) => {
    for (let i = 0, n = 1 + Math.floor(rnd() * 8); i < n; i++) tar[Math.floor(rnd() * tar.length)] = Math.floor(rnd() * 256);
    return tar;
  },
  'header field, checksum fixed': (tar, rnd) => {
    const off = pick(headerOffsets(tar), rnd);
    const [start, len] = pick(FIELDS, rnd);
    for (let i = 0; i < len; i++) if (rnd() < 0.3) tar[off + start + i] = pick([0, 0x20, 0x30, 0x37, 0x38, 0x80, 0xff, 0x2e, 0x2f, Math.floor(rnd() * 256)], rnd);
    withChecksum(tar, off);
    return tar;
  },
  'size field, checksum fixed': (tar, rnd) => {
    const off = pick(headerOffsets(tar), rnd);
    const size = pick(['0', '1', '777', '77777777777', '1000000', '-1', '999'], rnd);
    tar.fill(0, off + 124, off + 136);
    tar.write(size, off + 124, 'latin1');
    withChecksum(tar, off);
    return tar;
  },
  'name or link name, checksum fixed': (tar, rnd) => {
    const off = pick(headerOffsets(tar), rnd);
    const at = rnd() < 0.6 ? 0 : 157;
    tar.fill(0, off + at, off + at + 100);
    tar.write(pick(NASTY, rnd), off + at, 'utf8');
    withChecksum(tar, off);
    return tar;
  },
  'typeflag, checksum fixed': (tar, rnd) => {
    const off = pick(headerOffsets(tar), rnd);
    tar[off + 156] = pick([...'0123456789xgLKSAVDM'].map((c) => c.charCodeAt(0)).concat([0]), rnd);
    withChecksum(tar, off);
    return tar;
  },
  'PAX record text': (tar, rnd) => {
    const text = tar.toString('latin1');
    const at = text.search(/\d+ (path|mtime|uid|SCHILY)/);
    if (at < 0) return tar;
    const repl = pick(['999999 ', '0 ', '5 path=', '30 path=../../../../escape\n', 'x', '\n', '12 uid=-5\n'], rnd);
    Buffer.from(repl, 'latin1').copy(tar, at);
    return tar;
  },
  'truncated': (tar, rnd) => tar.subarray(0, Math.floor(rnd() * tar.length)),
};

function walkInside(root: string): void {
  const stack = [root];
  while (stack.length > 0) {
    const dir = stack.pop() as string;
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      const st = lstatSync(path);
      if (st.isDirectory()) stack.push(path);
    }
  }
}

test(`tar reader survives ${ROUNDS} rounds of mutated layers`, { ...ROOT_ONLY, timeout: 600_000 }, async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'berth-fuzz-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  const canaryDir = join(base, 'outside');
  await mkdir(canaryDir);
  await writeFile(join(canaryDir, 'canary'), 'original');
  const seeds = await Promise.all(SEEDS.map(tarOf));
  const names = Object.keys(MUTATIONS);
  const outcomes: Record<string, number> = { unpacked: 0, rejected: 0 };

  for (let round = 0; round < ROUNDS; round++) {
    const rnd = prng(round + 1);
    const mutation = pick(names, rnd);
    const tar = (MUTATIONS[mutation] as Mutation)(Buffer.from(pick(seeds, rnd)), rnd);
    const target = join(base, `r${round}`);
    await mkdir(target);
    // Chunked at odd sizes so records straddle reads.
    const chunks: Buffer[] = [];
    for (let i = 0; i < tar.length; i += 333) chunks.push(tar.subarray(i, i + 333));
    let timer: NodeJS.Timeout | undefined;
    const hang = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`round ${round} (${mutation}) hung`)), ROUND_LIMIT_MS);
    });
    try {
      await Promise.race([unpackLayer(Readable.from(chunks), target), hang]);
      outcomes.unpacked = (outcomes.unpacked ?? 0) + 1;
    } catch (err) {
      assert.ok(err instanceof BerthError, `round ${round} (${mutation}): not a clean rejection: ${(err as Error)?.stack ?? String(err)}`);
      outcomes.rejected = (outcomes.rejected ?? 0) + 1;
    } finally {
      clearTimeout(timer);
    }
    walkInside(target);
    assert.deepEqual(readdirSync(canaryDir), ['canary'], `round ${round} (${mutation}) wrote outside the target`);
    assert.equal(readFileSync(join(canaryDir, 'canary'), 'utf8'), 'original');
    assert.deepEqual(readdirSync(base).filter((n) => !/^r\d+$/.test(n) && n !== 'outside'), [], `round ${round} (${mutation}) wrote beside the target`);
    await rm(target, { recursive: true, force: true });
  }
  t.diagnostic(`outcomes: ${JSON.stringify(outcomes)}`);
  assert.ok((outcomes.rejected ?? 0) > 0 && (outcomes.unpacked ?? 0) > 0, 'the mutations produce both outcomes');
});
