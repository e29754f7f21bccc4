import { bigImage } from '../helpers/images.ts';
import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
const img = await bigImage({ scale: 1, seed: 'bench' });
for (const mode of ['gunzip', 'gunzip+hash', 'hash-compressed']) {
  const t0 = Date.now();
  await Promise.all(img.layers.map(async (l) => {
    const h = createHash('sha256');
    const sink = new Writable({ write(c, _e, cb) { if (mode === 'gunzip+hash') h.update(c); cb(); } });
    if (mode === 'hash-compressed') { for await (const c of createReadStream(l.file!)) h.update(c); return; }
    await pipeline(createReadStream(l.file!, { highWaterMark: 1 << 20 }), createGunzip({ chunkSize: 256 * 1024 }), sink);
  }));
  console.log(mode, Date.now() - t0, 'ms');
}
await img.cleanup();
