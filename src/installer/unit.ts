// berthd's systemd unit, and its config file when the node has none. The unit runs whatever
// `current` points at, so an upgrade is a symlink flip plus a restart.
import { access, mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { unlessMissing } from '../util/errors.ts';

/**
 * KillMode=process: a restart stops berthd alone, never the conmon monitors it started, so
 * containers survive an upgrade. Delegate=yes: berthd manages the cgroups below its own. No
 * Environment= or Node flags: berthd.js sets its thread pool, malloc and V8 settings itself (one
 * place for every way it is started: this unit, hack/start.sh, the tests).
 */
export function unitText(): string {
  return `# Written by berth-install; rewritten on every install or upgrade.
[Unit]
Description=berth container runtime (CRI)
Documentation=https://github.com/berth/berth/blob/main/docs/operations.md
After=network-online.target local-fs.target
Wants=network-online.target

[Service]
Type=exec
ExecStart=/opt/berth/current/bin/node /opt/berth/current/lib/berthd.js --config /etc/berth/config.toml
Restart=always
RestartSec=2
KillMode=process
Delegate=yes
OOMScoreAdjust=-999
LimitNOFILE=1048576
TasksMax=infinity
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
`;
}

/** Writes the unit; 'unchanged' when the file already says exactly this. */
export async function writeUnit(path: string): Promise<'written' | 'unchanged'> {
  const want = unitText();
  const have = await readFile(path, 'utf8').catch(() => undefined);
  if (have === want) return 'unchanged';
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, want);
  return 'written';
}

/** Writes the config only where the node has none: an operator's edits always win. */
export async function writeConfigIfAbsent(path: string, template: string): Promise<'written' | 'kept'> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  if (await unlessMissing(access(path).then(() => true))) return 'kept';
  await writeFileAtomic(path, template);
  return 'written';
}
