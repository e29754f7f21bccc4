// Image pins: names their owners want kept through kubelet image GC (CRI reports them `pinned`).
// One JSON file per owner, replaced whole and crash-safely on every change:
//   pins/<sha256(owner)>.json   { owner, images: [canonical names] }
// A pin is a name, not an image ID: when a pinned tag moves, the image now under it is the pinned
// one. Pins do not hold content themselves; GC keeps an image while it has names, as for any image.
import { hashedFileName, RecordDir } from '../store/record-dir.ts';

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

/** One name once each, in order: how a set is kept, whatever order its owner gave. */
const normalize = (names: string[]): string[] => [...new Set(names)].sort();

export class PinStore {
  /** Writes of one owner are queued, so two SetPins of one owner land in the order they were asked. */
  readonly #sets: RecordDir<PinSet>;
  #names = new Set<string>();

  constructor(dir: string) {
    this.#sets = new RecordDir(dir, isPinSet, { key: (s) => s.owner, fileName: hashedFileName });
  }

  /** Loads every owner's pins; returns the paths of damaged files, which were moved aside. */
  async load(): Promise<string[]> {
    const bad = await this.#sets.load();
    // A file written by hand may repeat or disorder names; hold them as set() would have.
    for (const s of this.#sets.all()) s.images = normalize(s.images);
    this.#reindex();
    return bad;
  }

  /** Replaces what `owner` pins; an empty list removes the owner's file. */
  async set(owner: string, names: string[]): Promise<string[]> {
    const images = normalize(names);
    // put and remove change the records in memory at once, before their write; index them then.
    const written = images.length === 0 ? this.#sets.remove(owner) : this.#sets.put({ owner, images });
    this.#reindex();
    await written;
    return images;
  }

  list(owner?: string): PinSet[] {
    const all = this.#sets.all().sort((a, b) => a.owner.localeCompare(b.owner));
    return owner ? all.filter((s) => s.owner === owner) : all;
  }

  /** True when any owner pins this canonical name. */
  has(name: string): boolean {
    return this.#names.has(name);
  }

  #reindex(): void {
    this.#names = new Set(this.#sets.all().flatMap((s) => s.images));
  }
}
