// Paths inside a container's root filesystem resolved as the container would see them: symlinks are
// followed with the rootfs as "/", and neither ".." nor an absolute link target can leave it. An image
// is untrusted input; its /etc/passwd may be a symlink to the host's.
import { constants as fsc } from 'node:fs';
import { lstat, open, readlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BerthError, errnoCode } from './errors.ts';

/** Linux's own limit on symlinks followed in one lookup. */
const MAX_LINKS = 40;

/**
 * The host path of `path` inside `root`, with every symlink that exists resolved within the root.
 * Components that do not exist are kept as written (".." still stops at the root), so the result
 * can name a file about to be created.
 */
export async function resolveInRoot(root: string, path: string): Promise<string> {
  const base = resolve(root);
  const pending = path.split('/');
  const done: string[] = [];
  let links = 0;
  let missing = false;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    if (missing) {
      done.push(part);
      continue;
    }
    const here = join(base, ...done, part);
    let isLink = false;
    try {
      isLink = (await lstat(here)).isSymbolicLink();
    } catch (err) {
      const code = errnoCode(err);
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
      missing = true;
    }
    if (!isLink) {
      done.push(part);
      continue;
    }
    if (++links > MAX_LINKS) {
      throw new BerthError('invalid-argument', `too many symlinks resolving ${JSON.stringify(path)} in ${base}`);
    }
    const target = await readlink(here);
    if (target.startsWith('/')) done.length = 0;
    pending.unshift(...target.split('/'));
  }
  return join(base, ...done);
}

/**
 * Reads a regular file inside `root` (resolved as above), or undefined when it does not exist. Opened
 * without following a final symlink and without blocking, so a FIFO or device planted in an image
 * cannot hang the daemon; anything but a regular file, or one larger than `maxBytes`, is refused.
 */
export async function readFileInRoot(root: string, path: string, maxBytes = 4 << 20): Promise<string | undefined> {
  const hostPath = await resolveInRoot(root, path);
  let handle;
  try {
    handle = await open(hostPath, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new BerthError('invalid-argument', `${path} in the container's rootfs is not a regular file`);
    if (st.size > maxBytes) {
      throw new BerthError('invalid-argument', `${path} in the container's rootfs is ${st.size} bytes, more than the ${maxBytes} berth reads`);
    }
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}
