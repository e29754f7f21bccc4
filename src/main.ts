// berthd: the daemon entry point. Reads flags and config, takes the root lock, opens the stores,
// serves CRI on the unix socket, and shuts down cleanly on SIGTERM/SIGINT.
import { parseArgs } from 'node:util';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { pino, type Logger } from 'pino';
import { ConfigError, loadConfig, type BerthConfig, type LogLevel } from './config/config.ts';
import { lockRoot, RootLockedError, type RootLock } from './daemon/root-lock.ts';
import { startServices } from './daemon/services.ts';
import { BERTH_VERSION } from './version.ts';

const HELP = `berthd ${BERTH_VERSION} — a Kubernetes container runtime (CRI v1 over gRPC)

Usage: berthd [flags]

Flags:
  --config FILE      TOML config (default /etc/berth/config.toml, used when present)
  --root DIR         persistent state: images, layers, metadata (default /var/lib/berth)
  --state DIR        runtime state, kept across daemon restarts; on tmpfs a host
                     reboot empties it (default /run/berth)
  --socket PATH      CRI gRPC unix socket, mode 0660 (default /run/berth/berth.sock)
  --log-level LEVEL  trace, debug, info, warn, error or fatal (default info)
  --version          print the version and exit
  -h, --help         print this help and exit

Flags override the config file; see docs/config.md for every config key.
`;

interface Flags {
  config?: string;
  root?: string;
  state?: string;
  socket?: string;
  logLevel?: string;
  help: boolean;
  version: boolean;
}

function readFlags(argv: string[]): Flags {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string' },
      root: { type: 'string' },
      state: { type: 'string' },
      socket: { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
      version: { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  return {
    config: values.config,
    root: values.root,
    state: values.state,
    socket: values.socket,
    logLevel: values['log-level'],
    help: values.help ?? false,
    version: values.version ?? false,
  };
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

function applyFlags(config: BerthConfig, flags: Flags): BerthConfig {
  if (flags.logLevel !== undefined && !LEVELS.includes(flags.logLevel)) {
    throw new ConfigError(`--log-level must be one of ${LEVELS.join(', ')}`);
  }
  return {
    ...config,
    root: flags.root ?? config.root,
    state: flags.state ?? config.state,
    socket: flags.socket ?? config.socket,
    logLevel: (flags.logLevel as LogLevel | undefined) ?? config.logLevel,
  };
}

/** True when something accepts connections on the socket: then it is not ours to delete. */
async function socketInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(path);
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

async function run(config: BerthConfig, source: string | null, log: Logger): Promise<void> {
  await mkdir(config.root, { recursive: true, mode: 0o711 });
  await mkdir(config.state, { recursive: true, mode: 0o711 });
  await mkdir(dirname(config.socket), { recursive: true, mode: 0o711 });
  const lock: RootLock = await lockRoot(config.root);
  try {
    if (await socketInUse(config.socket)) {
      throw new RootLockedError(`socket ${config.socket} is already served by another process; choose another --socket`);
    }
    await rm(config.socket, { force: true });

    const services = await startServices(config, log);
    await chmod(config.socket, 0o660);
    log.info({ socket: config.socket, root: config.root, state: config.state, config: source ?? 'embedded defaults', streaming: services.streamingUrl, version: BERTH_VERSION }, 'berthd serving CRI');

    await new Promise<void>((resolve) => {
      const stop = (signal: NodeJS.Signals): void => {
        log.info({ signal }, 'shutting down');
        resolve();
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
    await services.stop();
    await rm(config.socket, { force: true });
  } finally {
    await lock.release();
  }
}

export async function main(argv: string[]): Promise<number> {
  let flags: Flags;
  try {
    flags = readFlags(argv);
  } catch (err) {
    process.stderr.write(`berthd: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (flags.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (flags.version) {
    process.stdout.write(`berthd ${BERTH_VERSION}\n`);
    return 0;
  }
  let config: BerthConfig;
  let source: string | null;
  try {
    const loaded = await loadConfig(flags.config);
    source = loaded.source;
    config = applyFlags(loaded.config, flags);
  } catch (err) {
    process.stderr.write(`berthd: ${(err as Error).message}\n`);
    return 2;
  }
  const log = pino({ level: config.logLevel, base: { pid: process.pid } }, pino.destination({ dest: 2, sync: true }));
  try {
    await run(config, source, log);
    log.info('stopped');
    return 0;
  } catch (err) {
    if (err instanceof RootLockedError || err instanceof ConfigError) {
      log.fatal(err.message);
      process.stderr.write(`berthd: ${err.message}\n`);
      return 1;
    }
    log.fatal({ err }, 'berthd failed');
    return 1;
  }
}
