// SPDY/3.1 framing against byte sequences written out from the spec, header compression with the
// SPDY/3 dictionary, and two sessions talking over a real socket pair.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { constants, createDeflate, inflateSync } from 'node:zlib';
import { SPDY3_DICTIONARY } from '../../src/streaming/spdy/dictionary.ts';
import {
  encodeData,
  encodeGoAway,
  encodePing,
  encodeRstStream,
  encodeSettings,
  encodeSynReply,
  encodeSynStream,
  encodeWindowUpdate,
  FrameParser,
  packHeaderBlock,
  SpdyProtocolError,
  unpackHeaderBlock,
} from '../../src/streaming/spdy/frames.ts';
import { HeaderCompressor, HeaderDecompressor } from '../../src/streaming/spdy/header-compression.ts';
import { SpdySession, type SpdyStream } from '../../src/streaming/spdy/session.ts';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Adler-32 per RFC 1950, to check the dictionary's ID independently of zlib. */
function adler32(buf: Buffer): number {
  let a = 1;
  let b = 0;
  for (const byte of buf) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}

test('the SPDY/3 dictionary has the spec length and dictionary ID', () => {
  assert.equal(SPDY3_DICTIONARY.length, 1423);
  // The ID a zlib stream primed with this dictionary announces (FDICT), as every SPDY/3 peer computes it.
  assert.equal(adler32(SPDY3_DICTIONARY), 0xe3c6a7c2);
  assert.equal(SPDY3_DICTIONARY.subarray(0, 11).toString('latin1'), '\0\0\0\x07options');
  assert.ok(SPDY3_DICTIONARY.toString('latin1').endsWith('charset=iso-8859-1,utf-,*,enq=0.'));
});

test('frames encode to the bytes the spec lays out', () => {
  // DATA: control bit 0, stream 5; flags FIN; length 3.
  assert.deepEqual(encodeData(5, Buffer.from('abc'), true), hex('00000005 01000003 616263'));
  // SYN_STREAM: version 3 type 1, flags UNIDIRECTIONAL, length 10+2; stream 1, assoc 0, priority 7.
  assert.deepEqual(encodeSynStream(1, hex('aaaa'), { unidirectional: true, priority: 7 }), hex('80030001 0200000c 00000001 00000000 e000 aaaa'));
  assert.deepEqual(encodeSynReply(2, hex('bb'), true), hex('80030002 01000005 00000002 bb'));
  assert.deepEqual(encodeRstStream(3, 5), hex('80030003 00000008 00000003 00000005'));
  assert.deepEqual(encodeSettings([{ id: 7, value: 65536 }]), hex('80030004 0000000c 00000001 00000007 00010000'));
  assert.deepEqual(encodePing(2), hex('80030006 00000004 00000002'));
  assert.deepEqual(encodeGoAway(7, 0), hex('80030007 00000008 00000007 00000000'));
  assert.deepEqual(encodeWindowUpdate(0, 32768), hex('80030009 00000008 00000000 00008000'));
});

test('the parser reassembles frames cut at any byte and reads every field', () => {
  const bytes = Buffer.concat([
    hex('80030001 0300000c 00000003 00000001 4000 cafe'), // SYN_STREAM FIN|UNI, stream 3, assoc 1, prio 2
    hex('00000003 00000002 6869'), // DATA stream 3 "hi"
    hex('80030004 0100000c 00000001 01000007 00020000'), // SETTINGS CLEAR, flags 1, id 7 = 131072
    hex('8003000a 00000000'), // CREDENTIAL (dropped in 3.1): ignored
    hex('80030009 00000008 00000003 00001000'),
    hex('80030007 00000004 00000009'), // a SPDY/2-sized GOAWAY
  ]);
  for (const step of [1, 3, 7, bytes.length]) {
    const parser = new FrameParser();
    const frames = [];
    for (let i = 0; i < bytes.length; i += step) frames.push(...parser.push(bytes.subarray(i, i + step)));
    assert.deepEqual(frames, [
      { type: 'syn_stream', streamId: 3, associatedId: 1, priority: 2, fin: true, unidirectional: true, block: hex('cafe') },
      { type: 'data', streamId: 3, fin: false, data: Buffer.from('hi') },
      { type: 'settings', clear: true, entries: [{ flags: 1, id: 7, value: 131072 }] },
      { type: 'ignored', frameType: 10 },
      { type: 'window_update', streamId: 3, delta: 4096 },
      { type: 'goaway', lastGoodStreamId: 9, status: 0 },
    ]);
  }
});

test('the parser refuses other versions, short frames and oversized control frames', () => {
  assert.throws(() => new FrameParser().push(hex('80020006 00000004 00000001')), SpdyProtocolError);
  assert.throws(() => new FrameParser().push(hex('80030003 00000004 00000001')), /RST_STREAM frame of 4 bytes is too short/);
  assert.throws(() => new FrameParser(100).push(hex('80030001 00000065')), /larger than 100/);
});

test('header blocks: counts and lengths as 32-bit words; lowercase names; repeated names join with NUL', () => {
  const block = packHeaderBlock({ streamType: 'error', port: '80' });
  assert.deepEqual(block, hex('00000002 0000000a 73747265616d74797065 00000005 6572726f72 00000004 706f7274 00000002 3830'));
  assert.deepEqual(unpackHeaderBlock(block), { streamtype: 'error', port: '80' });
  const twice = hex('00000002 00000001 61 00000001 31 00000001 41 00000001 32');
  assert.deepEqual(unpackHeaderBlock(twice), { a: '1\u00002' });
  assert.throws(() => unpackHeaderBlock(hex('00000001 00000009 6162')), /string past the end/);
  assert.throws(() => unpackHeaderBlock(hex('00000001 00000000 00000000')), /empty header name/);
});

test('header compression: zlib with the SPDY/3 dictionary named, a sync flush after every block', () => {
  const c = new HeaderCompressor();
  const blocks = [packHeaderBlock({ streamtype: 'stdin' }), packHeaderBlock({ streamtype: 'stdout' }), packHeaderBlock({})];
  const wire = blocks.map((b) => c.compress(b));
  // zlib header with FDICT, then the dictionary ID; later blocks carry no header.
  assert.deepEqual(wire[0]?.subarray(0, 6), hex('78bb e3c6a7c2'));
  assert.notEqual(wire[1]?.[0], 0x78);
  // Each block ends with the empty stored block of a sync flush, so a reader hands out everything.
  for (const w of wire) assert.deepEqual(w.subarray(-5), hex('000000ffff'));
  // Plain zlib reads the concatenation as one stream.
  const all = inflateSync(Buffer.concat(wire), { dictionary: SPDY3_DICTIONARY, finishFlush: constants.Z_SYNC_FLUSH });
  assert.deepEqual(all, Buffer.concat(blocks));
  const d = new HeaderDecompressor();
  for (const [i, w] of wire.entries()) assert.deepEqual(d.decompress(w), blocks[i]);
});

/** What Go's framer sends: one deflate stream primed with the dictionary, Z_SYNC_FLUSH per block. */
async function deflatePerBlock(blocks: Buffer[]): Promise<Buffer[]> {
  const z = createDeflate({ dictionary: SPDY3_DICTIONARY, level: 9 });
  const chunks: Buffer[] = [];
  z.on('data', (c: Buffer) => chunks.push(c));
  const wire: Buffer[] = [];
  for (const b of blocks) {
    z.write(b);
    await new Promise<void>((resolve) => z.flush(constants.Z_SYNC_FLUSH, () => resolve()));
    wire.push(Buffer.concat(chunks.splice(0)));
  }
  z.close();
  return wire;
}

test('the decompressor follows a compressing peer across blocks that refer back to earlier ones', async () => {
  const blocks = Array.from({ length: 300 }, (_, i) => packHeaderBlock({ streamtype: i % 2 ? 'data' : 'error', port: '8080', requestid: String(i) }));
  const wire = await deflatePerBlock(blocks);
  // Later blocks are mostly back-references: far smaller than the first.
  assert.ok((wire[299]?.length as number) < (wire[0]?.length as number) / 2);
  const d = new HeaderDecompressor();
  for (const [i, w] of wire.entries()) assert.deepEqual(d.decompress(w), blocks[i]);
  assert.throws(() => new HeaderDecompressor().decompress(hex('deadbeef')), SpdyProtocolError);
  const other = Buffer.from(wire[0] as Buffer);
  other.writeUInt32BE(0x12345678, 2);
  assert.throws(() => new HeaderDecompressor().decompress(other), /dictionary other than SPDY\/3/);
});

async function socketPair(): Promise<[Socket, Socket, () => void]> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const client = connect(port, '127.0.0.1');
  const s = await accepted;
  return [client, s, () => server.close()];
}

function readAll(s: SpdyStream): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

test('two sessions: streams open, carry data both ways, half-close, ping and go away', async () => {
  const [a, b, done] = await socketPair();
  const client = new SpdySession(a, { role: 'client' });
  const server = new SpdySession(b, { role: 'server' });
  try {
    const opened = new Promise<SpdyStream>((r) => server.once('stream', r));
    const cs = client.openStream({ streamtype: 'stdin', extra: 'x' });
    const ss = await opened;
    assert.equal(ss.id, 1);
    assert.deepEqual(ss.headers, { streamtype: 'stdin', extra: 'x' });
    ss.reply();
    await cs.replied;
    const serverGot = readAll(ss);
    const clientGot = readAll(cs);
    cs.end(Buffer.from('to server'));
    assert.equal((await serverGot).toString(), 'to server');
    ss.end(Buffer.from('to client'));
    assert.equal((await clientGot).toString(), 'to client');
    assert.ok((await client.ping()) >= 0);
    assert.ok((await server.ping()) >= 0);
    const closed = new Promise<void>((r) => client.once('close', () => r()));
    server.close();
    await closed;
  } finally {
    client.destroy();
    server.destroy();
    done();
  }
});

test('a stream the server resets ends on the client, and the rest of the session goes on', async () => {
  const [a, b, done] = await socketPair();
  const client = new SpdySession(a, { role: 'client' });
  const server = new SpdySession(b, { role: 'server' });
  try {
    server.on('stream', (s: SpdyStream) => {
      if (s.headers.streamtype === 'reset-me') return s.reset();
      s.reply();
      s.end(Buffer.alloc(3 * 1024 * 1024, 7));
    });
    const doomed = client.openStream({ streamtype: 'reset-me' });
    await assert.rejects(doomed.replied, /was reset/);
    const big = client.openStream({ streamtype: 'big' });
    big.end();
    const got = await readAll(big);
    assert.equal(got.length, 3 * 1024 * 1024);
    assert.ok(got.every((x) => x === 7));
  } finally {
    client.destroy();
    server.destroy();
    done();
  }
});

test('a peer that announces a window is never sent more than it granted', async () => {
  const [a, b, done] = await socketPair();
  const server = new SpdySession(b, { role: 'server' });
  const compressor = new HeaderCompressor();
  try {
    const total = 200 * 1024;
    server.on('stream', (s: SpdyStream) => {
      s.reply();
      s.end(Buffer.alloc(total, 1));
    });
    // A hand-driven client: window 1000 for streams, the default 64 KiB for the session.
    let streamGranted = 1000;
    let sessionGranted = 64 * 1024;
    let received = 0;
    const parser = new FrameParser();
    const finished = new Promise<void>((resolve, reject) => {
      a.on('data', (chunk: Buffer) => {
        for (const f of parser.push(chunk)) {
          if (f.type !== 'data') continue;
          received += f.data.length;
          if (received > streamGranted || received > sessionGranted) reject(new Error(`received ${received} with ${streamGranted}/${sessionGranted} granted`));
          // Grant a little at a time, only once the previous grant is used up.
          if (received === streamGranted && received < total) {
            streamGranted += 1000;
            a.write(encodeWindowUpdate(1, 1000));
          }
          if (received === sessionGranted && received < total) {
            sessionGranted += 64 * 1024;
            a.write(encodeWindowUpdate(0, 64 * 1024));
          }
          if (f.fin) resolve();
        }
      });
    });
    a.write(encodeSettings([{ id: 7, value: 1000 }]));
    a.write(encodeSynStream(1, compressor.compress(packHeaderBlock({ streamtype: 'x' })), { fin: true }));
    await finished;
    assert.equal(received, total);
  } finally {
    server.destroy();
    a.destroy();
    done();
  }
});

test('a peer speaking garbage gets a GOAWAY and the session closes', async () => {
  const [a, b, done] = await socketPair();
  const server = new SpdySession(b, { role: 'server' });
  try {
    const reason = new Promise<string | undefined>((r) => server.once('close', r));
    const got: Buffer[] = [];
    a.on('data', (c: Buffer) => got.push(c));
    const aClosed = new Promise<void>((r) => a.once('close', () => r()));
    a.write(hex('80020001 00000000'));
    assert.match(String(await reason), /SPDY version 2/);
    await aClosed;
    assert.deepEqual(Buffer.concat(got), hex('80030007 00000008 00000000 00000001'));
  } finally {
    server.destroy();
    a.destroy();
    done();
  }
});

test('an idle session closes itself', async () => {
  const [a, b, done] = await socketPair();
  const server = new SpdySession(b, { role: 'server', idleTimeoutMs: 100 });
  try {
    const reason = await new Promise<string | undefined>((r) => server.once('close', r));
    assert.match(String(reason), /idle timeout/);
  } finally {
    a.destroy();
    done();
  }
});
