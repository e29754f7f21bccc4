// A directory of JSON records, one crash-safe file per object (`<key>.json`), mirrored in memory.
// Records on disk are input: each is checked on load and a damaged one is moved aside as
// `<file>.json.corrupt`, costing that object only.
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { syncDir, writeFileAtomic } from '../util/atomic-file.ts';
import { digestHex, sha256 } from '../util/digest.ts';
import { invalidArgument } from '../util/errors.ts';
import { KeyedMutex } from '../util/keyed-mutex.ts';

/** How records without an `id` field are keyed and named on disk. */
export interface RecordKeying<T> {
  /** The record's key (one record per key). */
  key: (rec: T) => string;
  /** The file name (without `.json`) for a key; the key itself when left out. */
  fileName?: (key: string) => string;
}

/** A file name for keys that are not safe as one (they hold `/`, say): the key's sha256 in hex. */
export const hashedFileName = (key: string): string => digestHex(sha256(key));

export class RecordDir<T> {
  readonly #dir: string;
  readonly #valid: (v: unknown) => v is T;
  readonly #key: (rec: T) => string;
  readonly #fileName: (key: string) => string;
  readonly #records = new Map<string, T>();
  readonly #writes = new KeyedMutex();

  /** Records with a string `id` are keyed by it; any other record needs its keying. */
  constructor(
    dir: string,
    valid: (v: unknown) => v is T,
    ...keying: T extends { id: string } ? [RecordKeying<T>?] : [RecordKeying<T>]
  ) {
    this.#dir = dir;
    this.#valid = valid;
    this.#key = keying[0]?.key ?? ((rec) => (rec as { id: string }).id);
    this.#fileName = keying[0]?.fileName ?? ((key) => key);
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
      // A record in another's file would be written back to a different one and never removed.
      if (this.#valid(parsed) && `${this.#fileName(this.#key(parsed))}.json` === file) {
        this.#records.set(this.#key(parsed), parsed);
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

  /** Every record by key, live (for lookups by key and ordered walks without a copy). */
  get byKey(): ReadonlyMap<string, T> {
    return this.#records;
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
    const key = this.#key(rec);
    this.#records.set(key, rec);
    await this.#writes.run(key, () => writeFileAtomic(this.#file(key), JSON.stringify(rec), 0o644, opts));
  }

  /**
   * Forgets the record and deletes its file. `durable: false` leaves the directory unsynced, for a
   * caller that removes many and calls `sync` once, or whose removal a crash may safely undo.
   */
  async remove(key: string, opts: { durable?: boolean } = {}): Promise<void> {
    this.#records.delete(key);
    await this.#writes.run(key, async () => {
      await rm(this.#file(key), { force: true });
      if (opts.durable ?? true) await syncDir(this.#dir);
    });
  }

  /** Makes earlier non-durable removals survive a power cut. */
  async sync(): Promise<void> {
    await syncDir(this.#dir);
  }

  #file(key: string): string {
    return join(this.#dir, `${this.#fileName(key)}.json`);
  }
}
