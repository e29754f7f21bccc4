// Runs one short command in a real runc container built from berth's spec pieces, for tests that
// must see what the kernel makes of a spec (seccomp filters, capabilities, devices). Each bundle
// and runc state lives in its own temp dir and is deleted, container included, even on failure.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { capabilities } from '../../src/oci/capabilities.ts';
import { defaultMounts } from '../../src/oci/mounts.ts';
import { protectedPaths } from '../../src/oci/paths.ts';
import type { OciSpec } from '../../src/oci/types.ts';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Why tests that run containers must skip here, or false when they can run. */
export const RUNC_SKIP: string | false =
  process.geteuid?.() !== 0
    ? 'needs root: runs containers with runc'
    : !process.env.PATH?.split(':').some((dir) => existsSync(join(dir, 'runc')))
      ? 'runc is not installed'
      : false;

/** A spec for `args` with busybox as the rootfs; `edit` changes it before it is written. */
export function baseSpec(args: string[]): OciSpec {
  return {
    ociVersion: '1.0.2',
    process: {
      user: { uid: 0, gid: 0 },
      args,
      env: ['PATH=/bin'],
      cwd: '/',
      capabilities: capabilities({ privileged: false }),
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: true },
    hostname: 'berth-test',
    mounts: defaultMounts(),
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }, { type: 'network' }],
      ...protectedPaths({ privileged: false }),
      resources: { devices: [{ allow: false, access: 'rwm' }] },
    },
  };
}

/**
 * Runs the spec under runc (own --root), waits at most 30 s, and removes everything it made.
 * `files` are written into the rootfs first (path relative to it → contents).
 */
export async function runSpec(spec: OciSpec, files: Record<string, string> = {}): Promise<RunResult> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-runc-'));
  const id = `berth-test-${randomBytes(6).toString('hex')}`;
  const state = join(dir, 'state');
  try {
    await mkdir(join(dir, 'rootfs/bin'), { recursive: true });
    for (const d of ['proc', 'sys', 'dev', 'tmp', 'etc']) await mkdir(join(dir, 'rootfs', d));
    await copyFile('/bin/busybox', join(dir, 'rootfs/bin/busybox'));
    for (const [path, text] of Object.entries(files)) await writeFile(join(dir, 'rootfs', path), text);
    await writeFile(join(dir, 'config.json'), JSON.stringify(spec));
    return await new Promise<RunResult>((resolve, reject) => {
      execFile('runc', ['--root', state, 'run', '--bundle', dir, id], { timeout: 30_000 }, (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(err);
        resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
      });
    });
  } finally {
    await new Promise<void>((resolve) => execFile('runc', ['--root', state, 'delete', '-f', id], () => resolve()));
    await rm(dir, { recursive: true, force: true });
  }
}
