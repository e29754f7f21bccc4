// One daemon per state root: two berthds writing the same metadata would corrupt it.
//
// The lock is an abstract unix socket named after the root directory's device and inode. The kernel
// lets only one process bind a name, so two daemons starting at once cannot both win; it frees the
// name the moment the holder dies, however it dies, so there is no stale lock to recognise or take
// over; and device + inode name the directory itself, so a second path to the same root (a symlink,
// a bind mount) finds the same lock. Node has no flock(); this needs no helper process and no native
// addon. Abstract names are per network namespace: berthd runs in the host's, as a runtime that
// sets up pod networking must. Whoever holds the lock answers a connection with its pid, so the
// refusal can name it.
import { createConnection, createServer, type Server } from 'node:net';
import { stat } from 'node:fs/promises';
import { errnoCode } from '../util/errors.ts';

export class RootLockedError extends Error {}

export interface RootLock {
  /** The lock's name, for logs: `@berthd-root-<dev>-<ino>`. */
  name: string;
  release(): Promise<void>;
}

export async function lockRoot(root: string): Promise<RootLock> {
  const { dev, ino } = await stat(root);
  const name = `berthd-root-${dev}-${ino}`;
  const server = createServer((sock) => {
    sock.on('error', () => sock.destroy());
    sock.end(`${process.pid}\n`);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(`\0${name}`, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    if (errnoCode(err) !== 'EADDRINUSE') throw err;
    const pid = await holderPid(name);
    throw new RootLockedError(
      `another berthd${pid === undefined ? '' : ` (pid ${pid})`} is already using root ${root}; stop it or start this one with a different --root`,
    );
  }
  // The lock must not keep the process alive on its own.
  server.unref();
  return { name: `@${name}`, release: () => close(server) };
}

/** Asks the holder for its pid; undefined if it does not answer within a second. */
function holderPid(name: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const sock = createConnection(`\0${name}`);
    let text = '';
    const done = (): void => {
      clearTimeout(timer);
      sock.destroy();
      const pid = Number.parseInt(text, 10);
      resolve(Number.isInteger(pid) ? pid : undefined);
    };
    const timer = setTimeout(done, 1000);
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      text += d;
    });
    sock.once('end', done);
    sock.once('error', done);
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
