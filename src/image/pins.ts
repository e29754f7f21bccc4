// Image pins: names their owners want kept through kubelet image GC (CRI reports them `pinned`).
// One JSON file per owner, replaced whole and crash-safely on every change:
//   pins/<sha256(owner)>.json   { owner, images: [canonical names] }
// A pin is a name, not an image ID: when a pinned tag moves, the image now under it is the pinned
// one. Pins do not hold content themselves; GC keeps an image while it has names, as for any image.
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { syncDir, writeFileAtomic } from '../util/atomic-file.ts';
import { digestHex, sha256 } from '../util/digest.ts';

export interface PinSet {
  owner: string;
  images: string[];
}

function isPinSet(v: unknown): v is PinSet {
  const o = v as Partial<PinSet> | null;
  return (
    typeof o === 'object' && o !== null &&
    typeof o.owner === 'string' && o.owner.length > 0 &&
    Array.isArray(o.images) && o.images.every((i) => typeof i === 'string' && i.length > 0)
  );
}

export class PinStore {
  readonly #dir: string;
  readonly #sets = new Map<string, PinSet>();
  #names = new Set<string>();
  /** Writes run one at a time, so two SetPins of one owner land in the order they were asked. */
  #writing: Promise<void> = Promise.resolve();

  constructor(dir: string) {
    this.#dir = dir;
  }

  /** Loads every owner's pins; returns the paths of damaged files, which were moved aside. */
  async load(): Promise<string[]> {
    await mkdir(this.#dir, { recursive: true });
    const bad: string[] = [];
    for (const file of await readdir(this.#dir)) {
      const path = join(this.#dir, file);
      if (file.startsWith('.')) {
        await rm(path, { force: true });
        continue;
      }
      if (!file.endsWith('.json')) continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(await readFile(path, 'utf8'));
      } catch {
        parsed = undefined;
      }
      if (isPinSet(parsed)) {
        this.#sets.set(parsed.owner, { owner: parsed.owner, images: [...new Set(parsed.images)].sort() });
      } else {
        await rename(path, `${path}.corrupt`);
        bad.push(`${path}.corrupt`);
      }
    }
    this.#reindex();
    return bad;
  }

  /** Replaces what `owner` pins; an empty list removes the owner's file. */
  async set(owner: string, names: string[]): Promise<string[]> {
    const images = [...new Set(names)].sort();
    const job = this.#writing.then(async () => {
      const file = this.#file(owner);
      if (images.length === 0) {
        await rm(file, { force: true });
        await syncDir(this.#dir);
        this.#sets.delete(owner);
      } else {
        await writeFileAtomic(file, JSON.stringify({ owner, images }));
        this.#sets.set(owner, { owner, images });
      }
      this.#reindex();
    });
    this.#writing = job.catch(() => undefined);
    await job;
    return images;
  }

  list(owner?: string): PinSet[] {
    const all = [...this.#sets.values()].sort((a, b) => a.owner.localeCompare(b.owner));
    return owner ? all.filter((s) => s.owner === owner) : all;
  }

  /** True when any owner pins this canonical name. */
  has(name: string): boolean {
    return this.#names.has(name);
  }

  #reindex(): void {
    this.#names = new Set([...this.#sets.values()].flatMap((s) => s.images));
  }

  #file(owner: string): string {
    return join(this.#dir, `${digestHex(sha256(owner))}.json`);
  }
}
