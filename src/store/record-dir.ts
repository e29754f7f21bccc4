// A directory of JSON records, one crash-safe file per object (`<id>.json`), mirrored in memory.
// Records on disk are input: each is checked on load and a damaged one is moved aside as
// `<id>.json.corrupt`, costing that object only.
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { syncDir, writeFileAtomic } from '../util/atomic-file.ts';
import { invalidArgument } from '../util/errors.ts';
import { KeyedMutex } from '../util/keyed-mutex.ts';

export class RecordDir<T extends { id: string }> {
  readonly #dir: string;
  readonly #valid: (v: unknown) => v is T;
  readonly #records = new Map<string, T>();
  readonly #writes = new KeyedMutex();

  constructor(dir: string, valid: (v: unknown) => v is T) {
    this.#dir = dir;
    this.#valid = valid;
  }

  /** Loads every record; returns the paths of damaged ones, which were moved aside. */
  async load(): Promise<string[]> {
    await mkdir(this.#dir, { recursive: true });
    const bad: string[] = [];
    for (const file of await readdir(this.#dir)) {
      const path = join(this.#dir, file);
      if (file.startsWith('.')) {
        await rm(path, { force: true }); // a temp file a crash left behind
        continue;
      }
      if (!file.endsWith('.json')) continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(await readFile(path, 'utf8'));
      } catch {
        parsed = undefined;
      }
      if (this.#valid(parsed) && `${parsed.id}.json` === file) {
        this.#records.set(parsed.id, parsed);
      } else {
        await rename(path, `${path}.corrupt`);
        bad.push(`${path}.corrupt`);
      }
    }
    return bad;
  }

  get(id: string): T | undefined {
    return this.#records.get(id);
  }

  all(): T[] {
    return [...this.#records.values()];
  }

  /** Finds by full ID or unique prefix; an ambiguous prefix is INVALID_ARGUMENT. */
  find(idOrPrefix: string, what: string): T | undefined {
    const exact = this.#records.get(idOrPrefix);
    if (exact || idOrPrefix === '') return exact;
    const hits = [...this.#records.keys()].filter((id) => id.startsWith(idOrPrefix));
    if (hits.length > 1) throw invalidArgument(`${what} ID prefix ${idOrPrefix} is ambiguous: it matches ${hits.length} ${what}s`);
    return hits[0] === undefined ? undefined : this.#records.get(hits[0]);
  }

  /**
   * Makes the record visible and writes it to disk. Writes of one record are queued, so the file
   * always ends up holding the last version put, whatever order the renames would finish in.
   * `durable: false` skips the fsyncs (see writeFileAtomic): for a version whose loss to a power cut
   * leaves the record as startup would make it anyway.
   */
  async put(rec: T, opts: { durable?: boolean } = {}): Promise<void> {
    this.#records.set(rec.id, rec);
    await this.#writes.run(rec.id, () => writeFileAtomic(join(this.#dir, `${rec.id}.json`), JSON.stringify(rec), 0o644, opts));
  }

  async remove(id: string): Promise<void> {
    this.#records.delete(id);
    await this.#writes.run(id, async () => {
      await rm(join(this.#dir, `${id}.json`), { force: true });
      await syncDir(this.#dir);
    });
  }

}
