// A container's root filesystem: overlayfs over the image's layer snapshots with a per-container
// upper (writable) directory, and the image's VOLUMEs as per-container directories seeded with the
// image's content at those paths (owner and mode kept), as containerd does.
import { mkdir, realpath, rm, stat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { runCommand } from '../util/run-command.ts';
import { mount, unmount } from '../util/mount.ts';
import type { OciMount } from '../oci/types.ts';

export interface RootfsPaths {
  /** Persistent per-container directory: upper, work, volumes. */
  layerDir: string;
  /** Where the overlay is mounted (inside the bundle). */
  target: string;
}

export async function mountRootfs(p: RootfsPaths, lowerDirs: string[], signal?: AbortSignal): Promise<void> {
  const upper = join(p.layerDir, 'upper');
  const work = join(p.layerDir, 'work');
  await mkdir(upper, { recursive: true, mode: 0o755 });
  await mkdir(work, { recursive: true, mode: 0o700 });
  await mkdir(p.target, { recursive: true, mode: 0o755 });
  if (lowerDirs.length === 0) throw new Error('the image has no layers');
  // overlayfs needs at least one lower dir; an image of one layer still gets its upper on top.
  await mount('overlay', 'overlay', p.target, [`lowerdir=${lowerDirs.join(':')}`, `upperdir=${upper}`, `workdir=${work}`], signal);
}

export async function unmountRootfs(p: RootfsPaths, signal?: AbortSignal): Promise<void> {
  await unmount(p.target, signal);
}

/** Bytes and inodes of the writable layer (what the container wrote). */
export async function writableUsage(layerDir: string, signal?: AbortSignal): Promise<{ bytes: number; inodes: number }> {
  const upper = join(layerDir, 'upper');
  const res = await runCommand('du', ['-s', '-B1', upper], { step: 'measure the writable layer', timeoutMs: 10_000, signal, okCodes: [1] });
  const inodes = await runCommand('du', ['-s', '--inodes', upper], { step: 'count the writable layer', timeoutMs: 10_000, signal, okCodes: [1] });
  return { bytes: Number(res.stdout.split('\t')[0]) || 0, inodes: Number(inodes.stdout.split('\t')[0]) || 0 };
}

/**
 * Seeds one directory per image VOLUME from the mounted rootfs and returns bind mounts for them.
 * Paths the CRI already mounts something at are skipped: the kubelet's volume wins.
 */
export async function imageVolumes(layerDir: string, rootfs: string, volumes: string[], skip: Set<string>, signal?: AbortSignal): Promise<OciMount[]> {
  const out: OciMount[] = [];
  let n = 0;
  for (const raw of volumes) {
    const dest = posix.normalize(raw.startsWith('/') ? raw : `/${raw}`).replace(/(.)\/$/, '$1');
    if (skip.has(dest)) continue;
    const dir = join(layerDir, 'volumes', String(n++));
    await mkdir(dir, { recursive: true, mode: 0o755 });
    // A symlink in the image could point the copy at the host's files: only seed from a path that
    // resolves inside the rootfs.
    const src = await realpath(join(rootfs, dest)).catch(() => undefined);
    const inside = src !== undefined && src.startsWith(`${rootfs}/`);
    const st = inside ? await stat(src).catch(() => undefined) : undefined;
    if (src && st?.isDirectory()) {
      // `src/.` copies the directory's own owner and mode onto `dir` along with its content.
      await runCommand('cp', ['-a', `${src}/.`, `${dir}/`], { step: `seed image volume ${dest}`, timeoutMs: 120_000, signal });
    }
    out.push({ destination: dest, type: 'bind', source: dir, options: ['rbind', 'rprivate', 'rw'] });
  }
  return out;
}

export async function removeLayer(layerDir: string): Promise<void> {
  await rm(layerDir, { recursive: true, force: true });
}
