// berth-install: the host side of berth on a cluster. The DaemonSet's init container runs
// `install`; `switch` / `revert` move the kubelet onto berth and back; `uninstall` removes berthd.
// Every host path is under --host-root, so tests run it against a temp dir.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { BERTH_VERSION } from '../version.ts';
import { errorMessage } from '../util/errors.ts';
import { onHost } from './host.ts';
import { hostSystemd } from './host-systemd.ts';
import { install, INSTALL_STEPS, type InstallStep } from './install.ts';
import { checkVersion } from './release.ts';
import { applyRevert, applySwitch, isSwitched, launchOnHost, SWITCH_STEPS, type SwitchStep } from './kubelet-switch.ts';
import { uninstall } from './uninstall.ts';

const HELP = `berth-install ${BERTH_VERSION} — installs berthd on a node and moves its kubelet onto berth

Usage: berth-install install   [--version V] [--source DIR] [--config-template FILE] [flags]
       berth-install switch    --drained [--apply] [flags]
       berth-install revert    [--apply] [flags]
       berth-install uninstall [--apply] [flags]

  install    copy Node.js and the bundles to /opt/berth/<version>, flip /opt/berth/current, write
             berthd.service (and /etc/berth/config.toml if absent), restart berthd and wait for it;
             if it does not become healthy, go back to the previous version and exit 1
  switch     point the kubelet at berth (only once the node is cordoned and drained: --drained);
             runs itself with --apply in a transient host unit, since it removes the asking pod
  revert     restore the kubelet's files from the backup, byte for byte, and restart it
  uninstall  revert the kubelet if switched, then remove berthd and /opt/berth (keeps /var/lib/berth)

Flags:
  --host-root DIR        the host's / as seen here (default /; the DaemonSet mounts it at /host)
  --version V            the version installed (default ${BERTH_VERSION})
  --source DIR           holds bin/node and lib/ (default: where this program lives)
  --config-template F    config.toml written when the node has none
  --socket PATH          berthd's socket (default <host-root>/run/berth/berth.sock)
  --health-timeout S     how long berthd has to answer CRI Status (default 120)
  --keep N               version directories kept after an upgrade (default 3)
  --host-exec PROG       run "PROG systemctl …" / "PROG systemd-run …" instead of entering the
                         host's mount namespace with nsenter (also BERTH_HOST_EXEC)
  --apply                do the work here (the transient host unit passes it)
  -h, --help, --version-info
`;

function fail(msg: string): number {
  process.stderr.write(`berth-install: ${msg}\n`);
  return 2;
}

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: true,
      options: {
        'host-root': { type: 'string', default: '/' },
        version: { type: 'string', default: BERTH_VERSION },
        source: { type: 'string' },
        'config-template': { type: 'string' },
        socket: { type: 'string' },
        'health-timeout': { type: 'string', default: '120' },
        keep: { type: 'string', default: '3' },
        'host-exec': { type: 'string' },
        drained: { type: 'boolean', default: false },
        apply: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        'version-info': { type: 'boolean', default: false },
      },
    });
  } catch (err) {
    return fail(`${errorMessage(err)}\n\n${HELP}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values['version-info']) {
    process.stdout.write(`berth-install ${BERTH_VERSION}\n`);
    return 0;
  }
  const [verb, ...rest] = positionals;
  if (!verb || rest.length > 0 || !['install', 'switch', 'revert', 'uninstall'].includes(verb)) return fail(`expected one of install, switch, revert, uninstall\n\n${HELP}`);
  const healthTimeout = Number(values['health-timeout']);
  const keep = Number(values.keep);
  if (!(healthTimeout > 0)) return fail('--health-timeout must be a positive number of seconds');
  if (!Number.isInteger(keep) || keep < 1) return fail('--keep must be a whole number of at least 1');
  const crash = process.env.BERTH_INSTALL_CRASH_AFTER;
  if (crash && ![...INSTALL_STEPS, ...SWITCH_STEPS].includes(crash as InstallStep)) return fail(`BERTH_INSTALL_CRASH_AFTER=${crash} names no step`);

  const hostRoot = resolve(values['host-root']);
  const log = pino({ base: { cmd: `berth-install ${verb}` } }, pino.destination({ dest: 2, sync: true }));
  const systemd = hostSystemd(hostRoot, values['host-exec'] ?? process.env.BERTH_HOST_EXEC);
  const socket = values.socket ?? onHost(hostRoot, '/run/berth/berth.sock');
  const ac = new AbortController();
  const onSignal = (): void => ac.abort(new Error('berth-install was asked to stop'));
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  const common = { hostRoot, systemd, log, signal: ac.signal };
  try {
    const version = checkVersion(values.version);
    if (verb === 'install') {
      await install({
        ...common,
        version,
        source: values.source ?? resolve(dirname(fileURLToPath(import.meta.url)), '..'),
        configTemplate: values['config-template'],
        socket,
        healthTimeoutMs: healthTimeout * 1000,
        keep,
        crashAfter: crash as InstallStep | undefined,
      });
    } else if (verb === 'switch') {
      if (!values.drained) return fail('refusing to switch the kubelet: the node must be cordoned and drained first (then pass --drained)');
      if (values.apply) await applySwitch({ ...common, socket, version, healthTimeoutMs: healthTimeout * 1000, crashAfter: crash as SwitchStep | undefined });
      else await launchOnHost(systemd, 'switch', ac.signal);
    } else if (verb === 'revert') {
      if (values.apply) await applyRevert(common);
      else if (await isSwitched(hostRoot)) await launchOnHost(systemd, 'revert', ac.signal);
      else log.info('revert: the kubelet was not switched; nothing to do');
    } else if (!values.apply && (await isSwitched(hostRoot))) {
      // The kubelet restart would end this pod mid-way: the host finishes the job.
      await launchOnHost(systemd, 'uninstall', ac.signal);
    } else {
      await uninstall(common);
    }
    return 0;
  } catch (err) {
    log.error({ err }, errorMessage(err));
    return 1;
  }
}
