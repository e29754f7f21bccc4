// A server stream whose client stops reading and then leaves: the daemon's generator must end
// instead of waiting forever for the stream to drain. Driven through the real socket with a store
// big enough (written straight to disk before start) that StreamImages fills every buffer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon } from '../helpers/daemon.ts';
import { until } from '../helpers/poll.ts';

const hex = (s: string): string => createHash('sha256').update(s).digest('hex');

/** `count` named images in the on-disk record format of src/image/records.ts. */
async function seedImages(root: string, count: number): Promise<void> {
  const images = join(root, 'metadata', 'images');
  const names = join(root, 'metadata', 'names');
  await mkdir(images, { recursive: true });
  await mkdir(names, { recursive: true });
  const pad = 'x'.repeat(150);
  // Synchronous writes: tens of thousands of tiny files go far faster than through the thread pool.
  for (let i = 0; i < count; i++) {
    const id = `sha256:${hex(`image ${i}`)}`;
    const name = `example.test/many/${pad}:t${i}`;
    const rec = { id, manifestDigest: id, manifestMediaType: 'application/vnd.oci.image.manifest.v1+json', configDigest: id, configSize: 1, layers: [], user: '', createdAt: '' };
    writeFileSync(join(images, `${id.slice(7)}.json`), JSON.stringify(rec));
    writeFileSync(join(names, `${hex(name)}.json`), JSON.stringify({ name, id }));
  }
}

test('a StreamImages client that stops reading and leaves ends the generator', { timeout: 120_000 }, async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'berth-stream-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  await seedImages(join(base, 'root'), 20_000);
  const d = await startDaemon({ root: join(base, 'root') });
  t.after(() => d.dispose());

  const call = d.client.open('image', 'StreamImages', {});
  call.on('error', () => {}); // the cancel below ends it with CANCELLED
  await new Promise<void>((resolve) => call.once('data', () => resolve()));
  call.pause();
  // Stopped reading: the server fills the window and its buffers, then waits for 'drain'.
  assert.doesNotMatch(d.logs(), /"stream ended"/, 'the stream cannot have finished: the client read one message of many');
  call.cancel();
  await until('the generator to end', () => /"msg":"stream ended"/.test(d.logs()));
  assert.match(d.logs(), /"cancelled":true[^\n]*"msg":"stream ended"/);
  // and the daemon still serves
  await d.client.call('runtime', 'Version', {});
});
