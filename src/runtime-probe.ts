// Readiness check behind the Status RPC's RuntimeReady: are the OCI runtime binaries and conmon there.
// (NetworkReady comes from PodNetwork.ready(), which knows which network pods join.)
import { access, constants } from 'node:fs/promises';
import { delimiter, isAbsolute, join } from 'node:path';
import type { BerthConfig } from './config/config.ts';

export interface ProbeResult {
  runtimeReady: boolean;
  runtimeMessage: string;
  /** Handler names whose binary was found. */
  handlers: string[];
}

async function executable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Finds a binary the way a shell does, so config may say `runc` or `/usr/sbin/runc`. */
export async function findBinary(name: string): Promise<string | undefined> {
  if (isAbsolute(name)) return (await executable(name)) ? name : undefined;
  const dirs = (process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter);
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (await executable(candidate)) return candidate;
  }
  return undefined;
}

export class RuntimeProbe {
  private readonly config: BerthConfig;
  constructor(config: BerthConfig) {
    this.config = config;
  }

  async check(): Promise<ProbeResult> {
    const handlers: string[] = [];
    for (const [name, h] of Object.entries(this.config.runtime.handlers)) {
      if (await findBinary(h.path)) handlers.push(name);
    }
    const defaultHandler = this.config.runtime.defaultHandler;
    const conmon = await findBinary(this.config.runtime.conmonPath);
    const runtimeReady = handlers.includes(defaultHandler) && conmon !== undefined;
    const runtimeMessage = !handlers.includes(defaultHandler)
      ? `default runtime handler ${defaultHandler}: binary ${this.config.runtime.handlers[defaultHandler]?.path ?? '?'} not found (install runc)`
      : conmon === undefined
        ? `container monitor ${this.config.runtime.conmonPath} not found (install conmon or set runtime.conmon_path)`
        : '';
    return { runtimeReady, runtimeMessage, handlers };
  }
}
