// What berth attached to each pod's netns, on disk, so DEL and CHECK work after a daemon restart
// and after the node's CNI config changed: per sandbox
//   <root>/network/results/<sandboxId>.json         { sandboxId, netnsPath, ifName, network, args, capabilityArgs }
//   <root>/network/results/<sandboxId>.result.json  the chain's ADD result
// The first is written durably (fsync) before the first plugin runs, so even a power cut mid-ADD
// leaves enough to DEL and free the IP lease, which outlives a reboot. The result is written after
// ADD without fsync: losing it to a power cut only means DEL runs without prevResult, which the
// CNI spec allows (and the pod's namespaces are gone after a power cut anyway).
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { syncDir, writeFileAtomic } from '../util/atomic-file.ts';
import { invalidArgument } from '../util/errors.ts';
import { parseNetwork, type NetworkList } from './cni-config.ts';

export interface AttachmentRecord {
  sandboxId: string;
  netnsPath: string;
  ifName: string;
  /** The exact network the plugins ran with; DEL uses it even if the node's config changed since. */
  network: NetworkList;
  args: string;
  capabilityArgs: Record<string, unknown>;
  /** The chain's final ADD result; absent while ADD is in flight (or was cut off by a crash). */
  result?: unknown;
}

const RESULT_SUFFIX = '.result.json';

const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Sandbox IDs name files here, so they must be plain names. */
export function checkSandboxId(id: string): void {
  if (!ID.test(id)) throw invalidArgument(`sandbox id ${JSON.stringify(id)} is not a valid id (letters, digits, _ . -)`);
}

function asRecord(v: unknown): AttachmentRecord | undefined {
  const o = v as Partial<AttachmentRecord> | null;
  if (typeof o !== 'object' || o === null) return undefined;
  if (typeof o.sandboxId !== 'string' || !ID.test(o.sandboxId)) return undefined;
  if (typeof o.netnsPath !== 'string' || typeof o.ifName !== 'string' || typeof o.args !== 'string') return undefined;
  if (typeof o.capabilityArgs !== 'object' || o.capabilityArgs === null || Array.isArray(o.capabilityArgs)) return undefined;
  if (o.result !== undefined && (typeof o.result !== 'object' || o.result === null)) return undefined;
  try {
    return { ...(o as AttachmentRecord), network: parseNetwork(o.network, true) };
  } catch {
    return undefined;
  }
}

export class ResultCache {
  readonly #dir: string;
  #ready: Promise<void> | undefined;

  constructor(dir: string) {
    this.#dir = dir;
  }

  get dir(): string {
    return this.#dir;
  }

  async put(record: AttachmentRecord): Promise<void> {
    checkSandboxId(record.sandboxId);
    this.#ready ??= mkdir(this.#dir, { recursive: true, mode: 0o700 }).then(() => {});
    await this.#ready;
    const { result, ...base } = record;
    await writeFileAtomic(this.#file(record.sandboxId), JSON.stringify(base), 0o600);
    if (result !== undefined) await this.putResult(record.sandboxId, result);
  }

  /** Records the ADD result beside the record (not fsynced: see the header). */
  async putResult(sandboxId: string, result: unknown): Promise<void> {
    checkSandboxId(sandboxId);
    await writeFileAtomic(this.#resultFile(sandboxId), JSON.stringify(result), 0o600, { durable: false });
  }

  /**
   * The record for a sandbox, or undefined when there is none. A damaged file is moved aside as
   * `*.json.corrupt` (that one pod's network can then not be cleaned by DEL) and reported via `onCorrupt`.
   */
  async get(sandboxId: string, onCorrupt: (path: string) => void): Promise<AttachmentRecord | undefined> {
    checkSandboxId(sandboxId);
    const path = this.#file(sandboxId);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    let record: AttachmentRecord | undefined;
    try {
      record = asRecord(JSON.parse(text));
    } catch {
      record = undefined;
    }
    if (record?.sandboxId === sandboxId) {
      const result = await this.#readResult(sandboxId);
      return result === undefined ? record : { ...record, result };
    }
    await rename(path, `${path}.corrupt`);
    onCorrupt(`${path}.corrupt`);
    return undefined;
  }

  /** An unreadable result (a power cut) counts as none: DEL works without prevResult. */
  async #readResult(sandboxId: string): Promise<unknown> {
    try {
      const result = JSON.parse(await readFile(this.#resultFile(sandboxId), 'utf8')) as unknown;
      return typeof result === 'object' && result !== null && !Array.isArray(result) ? result : undefined;
    } catch {
      return undefined;
    }
  }

  /** Sandbox IDs that have a record. */
  async ids(): Promise<string[]> {
    const files = await readdir(this.#dir).catch(() => [] as string[]);
    return files
      .filter((f) => f.endsWith('.json') && !f.endsWith(RESULT_SUFFIX) && !f.startsWith('.'))
      .map((f) => f.slice(0, -'.json'.length))
      .filter((id) => ID.test(id));
  }

  async remove(sandboxId: string): Promise<void> {
    checkSandboxId(sandboxId);
    await rm(this.#resultFile(sandboxId), { force: true });
    await rm(this.#file(sandboxId), { force: true });
    await syncDir(this.#dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  #file(sandboxId: string): string {
    return join(this.#dir, `${sandboxId}.json`);
  }

  #resultFile(sandboxId: string): string {
    return join(this.#dir, `${sandboxId}${RESULT_SUFFIX}`);
  }
}
