// Layer unpack: every tar entry kind, metadata, whiteouts, a real overlay mount, and hostile tars that
// try to write outside the snapshot.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pack, type Header } from 'tar-stream';
import { unpackLayer } from '../../src/snapshot/unpack.ts';
import { BerthError } from '../../src/util/errors.ts';
import { ROOT_ONLY } from '../helpers/root.ts';

type Entry = Partial<Header> & { name: string; data?: string | Buffer; pax?: Record<string, string> };

async function tarOf(entries: Entry[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => chunks.push(c as Buffer));
  const ended = new Promise<void>((resolve, reject) => {
    p.once('end', () => resolve());
    p.once('error', (err: unknown) => reject(err as Error));
  });
  for (const { data, ...header } of entries) {
    await new Promise<void>((resolve, reject) => {
      p.entry({ mtime: new Date(0), ...header }, data ?? '', (err) => (err ? reject(err) : resolve()));
    });
  }
  p.finalize();
  await ended;
  return Buffer.concat(chunks);
}

/** Feed a tar in small uneven chunks so records straddle chunk boundaries. */
function streamOf(buf: Buffer, chunk = 1000): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += chunk) parts.push(buf.subarray(i, i + chunk));
  return Readable.from(parts);
}

async function tempDir(t: TestContext, name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `berth-unpack-${name}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function unpack(t: TestContext, entries: Entry[]): Promise<string> {
  const dir = await tempDir(t, 'layer');
  await unpackLayer(streamOf(await tarOf(entries)), dir);
  return dir;
}

function xattr(path: string, name: string): string | null {
  try {
    return execFileSync('getfattr', ['-h', '--absolute-names', '--only-values', '-n', name, path], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  } catch {
    return null;
  }
}

/** A directory outside the layer with a canary file; `unchanged()` proves nothing was written there. */
async function sentinel(t: TestContext): Promise<{ dir: string; unchanged: () => void }> {
  const dir = await tempDir(t, 'outside');
  await writeFile(join(dir, 'canary'), 'original');
  return {
    dir,
    unchanged: () => {
      assert.deepEqual(readdirSync(dir), ['canary']);
      assert.equal(readFileSync(join(dir, 'canary'), 'utf8'), 'original');
    },
  };
}

async function assertRejected(t: TestContext, entries: Entry[], pattern: RegExp): Promise<string> {
  const dir = await tempDir(t, 'hostile');
  await assert.rejects(unpackLayer(streamOf(await tarOf(entries)), dir), (err: unknown) => {
    assert.ok(err instanceof BerthError, String(err));
    assert.equal(err.kind, 'invalid-argument');
    assert.match(err.message, pattern);
    return true;
  });
  return dir;
}

// Linux dev_t encoding for the small numbers used here.
const major = (rdev: number): number => (rdev >> 8) & 0xfff;
const minor = (rdev: number): number => (rdev & 0xff) | ((rdev >> 12) & 0xfff00);

test('unpacks files, dirs, symlinks, hardlinks, devices and fifos', ROOT_ONLY, async (t) => {
  const dir = await tempDir(t, 'layer');
  const stats = await unpackLayer(
    streamOf(
      await tarOf([
        { name: 'etc/', type: 'directory', mode: 0o755 },
        { name: 'etc/hostname', data: 'box\n', mode: 0o644 },
        { name: 'etc/alias', type: 'symlink', linkname: 'hostname' },
        { name: 'etc/hard', type: 'link', linkname: 'etc/hostname' },
        { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
        { name: 'dev/loop0', type: 'block-device', devmajor: 7, devminor: 0, mode: 0o660 },
        { name: 'run/fifo', type: 'fifo', mode: 0o600 },
        { name: 'empty', data: '' },
      ]),
    ),
    dir,
  );
  assert.deepEqual(stats, { files: 7, dirs: 3, bytes: 4, whiteouts: 0, implicitDirs: ['dev', 'run'] }, 'dirs include implicit parents');
  assert.equal(await readFile(join(dir, 'etc/hostname'), 'utf8'), 'box\n');
  assert.equal(readlinkSync(join(dir, 'etc/alias')), 'hostname');
  assert.equal(statSync(join(dir, 'etc/hard')).ino, statSync(join(dir, 'etc/hostname')).ino);
  assert.equal(statSync(join(dir, 'etc/hostname')).nlink, 2);
  const nul = lstatSync(join(dir, 'dev/null'));
  assert.ok(nul.isCharacterDevice());
  assert.deepEqual([major(nul.rdev), minor(nul.rdev), nul.mode & 0o7777], [1, 3, 0o666]);
  const loop = lstatSync(join(dir, 'dev/loop0'));
  assert.ok(loop.isBlockDevice());
  assert.deepEqual([major(loop.rdev), minor(loop.rdev), loop.mode & 0o7777], [7, 0, 0o660]);
  const fifo = lstatSync(join(dir, 'run/fifo'));
  assert.ok(fifo.isFIFO());
  assert.equal(fifo.mode & 0o7777, 0o600);
  assert.equal(statSync(join(dir, 'empty')).size, 0);
  assert.ok(statSync(join(dir, 'run')).isDirectory(), 'implicit parent dir created');
});

test('streams large files intact across chunk boundaries', ROOT_ONLY, async (t) => {
  const big = randomBytes(3 * 1024 * 1024 + 17);
  const dir = await tempDir(t, 'layer');
  const stats = await unpackLayer(
    streamOf(await tarOf([{ name: 'big.bin', data: big }, { name: 'after', data: 'x' }]), 65_537),
    dir,
  );
  assert.ok((await readFile(join(dir, 'big.bin'))).equals(big));
  assert.equal(await readFile(join(dir, 'after'), 'utf8'), 'x');
  assert.equal(stats.bytes, big.length + 1);
});

test('applies numeric ownership, special mode bits and mtimes (dirs last)', ROOT_ONLY, async (t) => {
  const dir = await unpack(t, [
    { name: 'opt', type: 'directory', mode: 0o2775, uid: 1234, gid: 4321, mtime: new Date('2001-02-03T04:05:06Z') },
    { name: 'opt/suid', data: '#!/bin/sh\n', mode: 0o4755, uid: 1234, gid: 4321, mtime: new Date('2010-01-01T00:00:00Z') },
    { name: 'opt/link', type: 'symlink', linkname: 'suid', uid: 1234, gid: 99, mtime: new Date('2011-01-01T00:00:00Z') },
    { name: 'tmp', type: 'directory', mode: 0o1777 },
    { name: 'tmp/late-child', data: 'changes tmp mtime unless dir metadata is applied last' },
    { name: 'root-file', data: 'r', mode: 0o600 },
  ]);
  const opt = statSync(join(dir, 'opt'));
  assert.deepEqual([opt.uid, opt.gid, opt.mode & 0o7777], [1234, 4321, 0o2775]);
  assert.equal(opt.mtime.toISOString(), '2001-02-03T04:05:06.000Z');
  const suid = statSync(join(dir, 'opt/suid'));
  assert.deepEqual([suid.uid, suid.gid, suid.mode & 0o7777], [1234, 4321, 0o4755], 'chmod after chown keeps setuid');
  assert.equal(suid.mtime.toISOString(), '2010-01-01T00:00:00.000Z');
  const link = lstatSync(join(dir, 'opt/link'));
  assert.deepEqual([link.uid, link.gid], [1234, 99]);
  assert.equal(link.mtime.toISOString(), '2011-01-01T00:00:00.000Z');
  const tmp = statSync(join(dir, 'tmp'));
  assert.equal(tmp.mode & 0o7777, 0o1777);
  assert.equal(tmp.mtime.getTime(), 0);
  const rootFile = statSync(join(dir, 'root-file'));
  assert.deepEqual([rootFile.uid, rootFile.gid, rootFile.mode & 0o7777], [0, 0, 0o600]);
});

test('a setgid target dir does not leak its group into root-owned entries', ROOT_ONLY, async (t) => {
  const dir = await tempDir(t, 'setgid');
  execFileSync('chown', ['0:777', dir]);
  execFileSync('chmod', ['2755', dir]);
  await unpackLayer(streamOf(await tarOf([{ name: 'sub/file', data: 'x' }])), dir);
  assert.equal(statSync(join(dir, 'sub/file')).gid, 0);
  assert.equal(statSync(join(dir, 'sub')).gid, 0);
  assert.equal(statSync(join(dir, 'sub')).mode & 0o7777, 0o755);
});

test('PAX records: xattrs (binary too), sub-second mtime, long names, big uids', ROOT_ONLY, async (t) => {
  const long = `${'d'.repeat(120)}/${'e'.repeat(120)}/${'f'.repeat(150)}.txt`;
  const tar = await tarOf([
    { name: 'attrs', data: 'x', pax: { 'SCHILY.xattr.user.foo': 'bar', 'SCHILY.xattr.trusted.overlay.opaque': 'y' } },
    { name: 'bin', data: 'y', pax: { 'SCHILY.xattr.user.bin': 'PLACEHOLDER', mtime: '1234567890.25', uid: '3000000', gid: '3000001' } },
    { name: 'adir', type: 'directory', pax: { 'SCHILY.xattr.trusted.note': 'dir attr' } },
    { name: long, data: 'long' },
    { name: 'linked', data: 'l', pax: { 'SCHILY.xattr.user.kept': 'yes' } },
    { name: 'linked2', type: 'link', linkname: 'linked' },
    { name: 'linked', data: 'replaced' },
  ]);
  // tar-stream writes PAX values as text; splice raw bytes in to prove binary values survive.
  const at = tar.indexOf('PLACEHOLDER');
  Buffer.from([0xff, 0x00, 0x80, 0x01, 0x0a, 0x3d, 0x20, 0xc3, 0x28, 0x00, 0xfe]).copy(tar, at);
  const dir = await tempDir(t, 'layer');
  await unpackLayer(streamOf(tar), dir);

  assert.equal(xattr(join(dir, 'attrs'), 'user.foo'), 'bar');
  assert.equal(xattr(join(dir, 'attrs'), 'trusted.overlay.opaque'), null, 'overlay xattrs from the tar are dropped');
  const raw = execFileSync('getfattr', ['--absolute-names', '--only-values', '-n', 'user.bin', join(dir, 'bin')]);
  assert.equal(raw.toString('hex'), 'ff0080010a3d20c32800fe');
  const bin = statSync(join(dir, 'bin'));
  assert.equal(bin.mtimeMs, 1234567890250);
  assert.deepEqual([bin.uid, bin.gid], [3000000, 3000001]);
  assert.equal(xattr(join(dir, 'adir'), 'trusted.note'), 'dir attr');
  assert.equal(await readFile(join(dir, long), 'utf8'), 'long');
  assert.equal(xattr(join(dir, 'linked2'), 'user.kept'), 'yes', 'xattrs reach an inode whose first name was replaced');
  assert.equal(xattr(join(dir, 'linked'), 'user.kept'), null);
});

/** type, mode, owner, size, whole-second mtime, link target, content and xattrs of every path. */
function describeTree(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    const path = rel === '' ? root : join(root, rel);
    const st = lstatSync(path);
    const kind = st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : st.isFIFO() ? 'p' : 'f';
    const body = kind === 'f' ? readFileSync(path).toString('base64') : kind === 'l' ? readlinkSync(path) : '';
    const attrs = kind === 'f' ? xattr(path, 'user.note') : null;
    const mtime = kind === 'd' && rel === '' ? '' : Math.floor(st.mtimeMs / 1000);
    out.push([rel, kind, (st.mode & 0o7777).toString(8), st.uid, st.gid, mtime, body, attrs, kind === 'f' ? st.nlink : ''].join(' '));
    if (kind === 'd') for (const name of readdirSync(path).sort()) walk(rel === '' ? name : join(rel, name));
  };
  walk('');
  return out;
}

test('round-trips real GNU tar output (gnu and posix formats)', ROOT_ONLY, async (t) => {
  const src = await tempDir(t, 'src');
  const long = join('x'.repeat(90), 'y'.repeat(90), 'z'.repeat(90));
  await mkdir(join(src, long), { recursive: true });
  await writeFile(join(src, long, 'deep.txt'), 'deep');
  await writeFile(join(src, 'suid'), '#!/bin/sh\n');
  execFileSync('chown', ['1234:5678', join(src, 'suid')]);
  execFileSync('chmod', ['4750', join(src, 'suid')]);
  execFileSync('setfattr', ['-n', 'user.note', '-v', 'hello', join(src, 'suid')]);
  execFileSync('ln', [join(src, 'suid'), join(src, 'hard')]);
  execFileSync('ln', ['-s', `../${'t'.repeat(150)}`, join(src, 'longlink')]);
  execFileSync('mkfifo', [join(src, 'pipe')]);
  execFileSync('touch', ['-h', '-d', '2000-01-01T00:00:00Z', join(src, 'longlink'), join(src, 'x'.repeat(90))]);
  const expected = describeTree(src);
  // Plain GNU format carries long names in 'L'/'K' records; --xattrs switches to PAX records.
  for (const [format, xattrs] of [['gnu', false], ['gnu', true], ['posix', true]] as const) {
    const flags = xattrs ? ['--xattrs', '--xattrs-include=user.*'] : [];
    const tar = execFileSync('tar', [`--format=${format}`, ...flags, '--numeric-owner', '-C', src, '-cf', '-', '.'], {
      maxBuffer: 64 * 1024 * 1024,
    });
    const dir = await tempDir(t, format);
    await unpackLayer(streamOf(tar, 4096), dir);
    const want = xattrs ? expected : expected.map((l) => l.replace(' hello ', '  '));
    assert.deepEqual(describeTree(dir), want, `${format}${xattrs ? ' with xattrs' : ''}`);
  }
});

test('whiteouts become 0/0 char devices and opaque markers set trusted.overlay.opaque', ROOT_ONLY, async (t) => {
  const dir = await tempDir(t, 'layer');
  const stats = await unpackLayer(
    streamOf(
      await tarOf([
        { name: '.wh.gone', data: '' },
        { name: 'etc/.wh.passwd', data: '' },
        { name: 'var/', type: 'directory' },
        { name: 'var/.wh..wh..opq', data: '' },
        { name: 'var/keep', data: 'k' },
        { name: 'deep/dir/.wh..wh..opq', data: '' },
        { name: '.wh..wh.plnk', type: 'directory' },
      ]),
    ),
    dir,
  );
  assert.equal(stats.whiteouts, 2);
  for (const path of ['gone', 'etc/passwd']) {
    const st = lstatSync(join(dir, path));
    assert.ok(st.isCharacterDevice(), path);
    assert.equal(st.rdev, 0);
  }
  assert.equal(lstatSync(join(dir, 'gone')).ino, lstatSync(join(dir, 'etc/passwd')).ino, 'whiteouts share one inode');
  assert.equal(xattr(join(dir, 'var'), 'trusted.overlay.opaque'), 'y');
  assert.equal(xattr(join(dir, 'deep/dir'), 'trusted.overlay.opaque'), 'y');
  assert.equal(xattr(join(dir, 'etc'), 'trusted.overlay.opaque'), null);
  assert.deepEqual((await readdir(dir)).sort(), ['deep', 'etc', 'gone', 'var']);
  assert.deepEqual(await readdir(join(dir, 'var')), ['keep']);
});

test('stacked layers mount as a real overlay with whiteouts and opaque dirs honoured', ROOT_ONLY, async (t) => {
  const lower = await unpack(t, [
    { name: 'a', data: 'a' },
    { name: 'b/', type: 'directory' },
    { name: 'b/inner', data: 'b' },
    { name: 'b/other', data: 'o' },
    { name: 'c/', type: 'directory' },
    { name: 'c/x', data: 'x' },
  ]);
  const upper = await unpack(t, [
    { name: '.wh.a', data: '' },
    { name: 'b/.wh.inner', data: '' },
    { name: 'c/', type: 'directory' },
    { name: 'c/.wh..wh..opq', data: '' },
    { name: 'c/y', data: 'y' },
  ]);
  const mnt = await tempDir(t, 'mnt');
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${upper}:${lower}`, mnt]);
  try {
    assert.deepEqual((await readdir(mnt)).sort(), ['b', 'c']);
    assert.equal(existsSync(join(mnt, 'a')), false);
    assert.deepEqual(await readdir(join(mnt, 'b')), ['other'], 'a second (hard-linked) whiteout works too');
    assert.deepEqual(await readdir(join(mnt, 'c')), ['y']);
    assert.equal(await readFile(join(mnt, 'c/y'), 'utf8'), 'y');
  } finally {
    execFileSync('umount', [mnt]);
  }
});

test('later entries replace earlier ones without writing through them', ROOT_ONLY, async (t) => {
  const out = await sentinel(t);
  const dir = await unpack(t, [
    { name: 'f', data: 'old' },
    { name: 'f', data: 'new' },
    { name: 'd', type: 'directory', mode: 0o700 },
    { name: 'd/child', data: 'kept' },
    { name: 'd', type: 'directory', mode: 0o750 },
    { name: 'was-dir', type: 'directory' },
    { name: 'was-dir/x', data: 'x' },
    { name: 'was-dir', data: 'now a file' },
    { name: 'was-file', data: 'file' },
    { name: 'was-file', type: 'directory' },
    { name: 'was-file/y', data: 'y' },
    { name: 'evil', type: 'symlink', linkname: join(out.dir, 'canary') },
    { name: 'evil', data: 'pwned' },
    { name: 'h1', data: 'shared' },
    { name: 'h2', type: 'link', linkname: 'h1' },
    { name: 'h1', data: 'replaced' },
  ]);
  assert.equal(await readFile(join(dir, 'f'), 'utf8'), 'new');
  assert.equal(statSync(join(dir, 'd')).mode & 0o777, 0o750);
  assert.equal(await readFile(join(dir, 'd/child'), 'utf8'), 'kept');
  assert.equal(await readFile(join(dir, 'was-dir'), 'utf8'), 'now a file');
  assert.equal(await readFile(join(dir, 'was-file/y'), 'utf8'), 'y');
  assert.ok(lstatSync(join(dir, 'evil')).isFile());
  assert.equal(await readFile(join(dir, 'evil'), 'utf8'), 'pwned');
  assert.equal(await readFile(join(dir, 'h2'), 'utf8'), 'shared', 'replacing a hardlinked path does not touch the other link');
  assert.equal(await readFile(join(dir, 'h1'), 'utf8'), 'replaced');
  out.unchanged();
});

test('names are normalised: ./ and absolute names land inside the layer', ROOT_ONLY, async (t) => {
  const dir = await unpack(t, [
    { name: './', type: 'directory', mode: 0o755, mtime: new Date('2005-05-05T00:00:00Z') },
    { name: './etc/os-release', data: 'ID=test' },
    { name: '/abs/escape', data: 'inside' },
    { name: 'a/./b/../c', data: 'lexical' },
  ]);
  assert.equal(await readFile(join(dir, 'etc/os-release'), 'utf8'), 'ID=test');
  assert.equal(await readFile(join(dir, 'abs/escape'), 'utf8'), 'inside');
  assert.equal(await readFile(join(dir, 'a/c'), 'utf8'), 'lexical');
  assert.equal(statSync(dir).mtime.toISOString(), '2005-05-05T00:00:00.000Z', 'root entry metadata applies to the layer root');
});

test('hostile: .. cannot climb out of the layer', ROOT_ONLY, async (t) => {
  const out = await sentinel(t);
  await assertRejected(t, [{ name: '../escape', data: 'x' }], /escapes the layer root/);
  await assertRejected(t, [{ name: 'a/../../escape', data: 'x' }], /escapes the layer root/);
  await assertRejected(t, [{ name: `../../../../../../${out.dir}/canary`, data: 'x' }], /escapes the layer root/);
  out.unchanged();
  assert.equal(existsSync(join(tmpdir(), 'escape')), false);
});

test('hostile: a symlink in the layer is never followed as a parent', ROOT_ONLY, async (t) => {
  const out = await sentinel(t);
  await assertRejected(
    t,
    [
      { name: 'evil', type: 'symlink', linkname: out.dir },
      { name: 'evil/pwned', data: 'x' },
    ],
    /parent "evil" is a symlink/,
  );
  await assertRejected(
    t,
    [
      { name: 'evil', type: 'symlink', linkname: out.dir },
      { name: 'evil/sub/deeper', type: 'directory' },
    ],
    /is a symlink/,
  );
  await assertRejected(
    t,
    [
      { name: 'evil', type: 'symlink', linkname: out.dir },
      { name: 'evil/.wh.canary', data: '' },
    ],
    /is a symlink/,
  );
  await assertRejected(
    t,
    [
      { name: 'evil', type: 'symlink', linkname: out.dir },
      { name: 'evil/.wh..wh..opq', data: '' },
    ],
    /is a symlink/,
  );
  out.unchanged();
});

test('hostile: hardlinks must point at entries of this layer, not through symlinks', ROOT_ONLY, async (t) => {
  const out = await sentinel(t);
  await assertRejected(t, [{ name: 'pw', type: 'link', linkname: '../../etc/passwd' }], /escapes the layer root/);
  await assertRejected(t, [{ name: 'pw', type: 'link', linkname: '/etc/passwd' }], /not in this layer/);
  await assertRejected(t, [{ name: 'c', type: 'link', linkname: join(out.dir, 'canary') }], /not in this layer/);
  await assertRejected(
    t,
    [
      { name: 'evil', type: 'symlink', linkname: out.dir },
      { name: 'c', type: 'link', linkname: 'evil/canary' },
    ],
    /not in this layer/,
  );
  await assertRejected(t, [{ name: 'd', type: 'directory' }, { name: 'l', type: 'link', linkname: 'd' }], /points to a directory/);
  out.unchanged();
  // A hardlink to a symlink links the symlink itself; writing the layer never touches its target.
  const dir = await unpack(t, [
    { name: 'evil', type: 'symlink', linkname: join(out.dir, 'canary') },
    { name: 'twin', type: 'link', linkname: 'evil' },
  ]);
  assert.ok(lstatSync(join(dir, 'twin')).isSymbolicLink());
  assert.equal(statSync(join(out.dir, 'canary')).nlink, 1);
  out.unchanged();
});

test('malformed input: truncated tar, bad checksum, stream errors, non-empty target', ROOT_ONLY, async (t) => {
  const tar = await tarOf([{ name: 'f', data: 'x'.repeat(2000) }]);
  const truncated = await tempDir(t, 'trunc');
  await assert.rejects(unpackLayer(streamOf(tar.subarray(0, 1500)), truncated), /ends in the middle/);

  const corrupt = Buffer.from(tar);
  corrupt[10] = 0x41;
  await assert.rejects(unpackLayer(streamOf(corrupt), await tempDir(t, 'corrupt')), /checksum/);

  const failDir = await tempDir(t, 'fail');
  const failing = new Readable({ read() {} });
  failing.push(tar.subarray(0, 1024));
  setImmediate(() => failing.destroy(new Error('network went away')));
  await assert.rejects(unpackLayer(failing, failDir), /network went away/);

  const badUid = await tarOf([{ name: 'f', data: 'x', pax: { uid: '-5' } }]);
  await assert.rejects(unpackLayer(streamOf(badUid), await tempDir(t, 'uid')), /invalid uid/);

  const aborted = AbortSignal.abort();
  await assert.rejects(unpackLayer(streamOf(tar), await tempDir(t, 'abort'), { signal: aborted }), { name: 'AbortError' });

  const full = await tempDir(t, 'full');
  await mkdir(join(full, 'something'));
  await assert.rejects(unpackLayer(streamOf(tar), full), /not empty/);
});

test('consumes trailing padding so upstream hashing sees every byte', ROOT_ONLY, async (t) => {
  const tar = Buffer.concat([await tarOf([{ name: 'f', data: 'x' }]), Buffer.alloc(8192)]);
  let seen = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      done(null, chunk);
    },
  });
  await unpackLayer(streamOf(tar, 512).pipe(counter), await tempDir(t, 'pad'));
  assert.equal(seen, tar.length);
});

test('a buffered layer of many small files lets the event loop run while it unpacks', ROOT_ONLY, async (t) => {
  // The whole tar arrives as one chunk, so nothing the unpacker awaits needs the event loop: without
  // yielding it would write all 3000 files before a timer, a socket read or a gRPC call could run.
  const files = Array.from({ length: 3000 }, (_, i) => ({ name: `d${i % 30}/f${i}`, data: `file ${i}\n` }));
  const dir = await tempDir(t, 'yield');
  let turns = 0;
  let done = false;
  const spin = (): void => {
    if (done) return;
    turns++;
    setImmediate(spin);
  };
  const unpacking = unpackLayer(Readable.from([await tarOf(files)]), dir);
  setImmediate(spin);
  const stats = await unpacking;
  done = true;
  assert.equal(stats.files, 3000);
  assert.equal(readFileSync(join(dir, 'd29/f2999'), 'utf8'), 'file 2999\n');
  assert.ok(turns > 0, 'the event loop never ran during the unpack');
});
