// Crash-safe file writes: a reader (or a daemon restarting after kill -9) sees either the old
// contents or the new ones, never a torn file.
import { open, rename, rm } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';

/** fsync a directory so a rename or unlink inside it survives a power cut. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Name for a temp file beside `path`; the leading dot and `.tmp-` mark let startup sweeps find leftovers. */
export function tempSibling(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${randomBytes(6).toString('hex')}`);
}

/**
 * Write temp → fsync → rename over `path` → fsync the directory. With `durable: false` the two
 * fsyncs are skipped: readers and a restart after kill -9 still see old or new contents (the page
 * cache outlives the process), but a power cut may lose the file, so only use it for files whose
 * loss costs nothing that outlives a power cut (see the callers).
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644, opts: { durable?: boolean } = {}): Promise<void> {
  const durable = opts.durable ?? true;
  const tmp = tempSibling(path);
  const handle = await open(tmp, 'wx', mode);
  try {
    await handle.writeFile(data);
    if (durable) await handle.sync();
  } catch (err) {
    await handle.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  if (durable) await syncDir(dirname(path));
}
