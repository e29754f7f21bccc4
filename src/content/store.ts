// Content-addressed blob store: every blob lives at <root>/blobs/sha256/<hex> and is only ever put
// there after its bytes were hashed and matched the digest the caller expected. Downloads stream into
// a temp file under <root>/ingest/ (hashed as they arrive, never held in memory) and are renamed into
// place on commit, so a crash leaves at most a stray ingest file, which init() sweeps away.
import { createHash, type Hash } from 'node:crypto';
import type { ReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { syncDir, tempSibling, writeFileAtomic } from '../util/atomic-file.ts';
import { assertDigest, digestHex, sha256 } from '../util/digest.ts';
import { writeAll } from '../util/write-all.ts';
import { BerthError, errnoCode, errorMessage, failedPrecondition, invalidArgument, notFound, resourceExhausted } from '../util/errors.ts';

/** What the caller knows about a blob before fetching it (usually an OCI descriptor). */
export interface ExpectedBlob {
  digest: string;
  /** Checked on commit, and enforced while writing so an endless body can't fill the disk. */
  size?: number;
}

export interface BlobInfo {
  digest: string;
  size: number;
}

/** Blobs are immutable once committed; read-only files make accidental in-place edits fail loudly. */
const BLOB_MODE = 0o444;
/** Large enough to absorb disk-latency hiccups while a download is teed into an unpacker. */
const WRITER_HIGH_WATER_MARK = 1 << 20;
const HEX_RE = /^[a-f0-9]{64}$/;

/** Thrown when written bytes don't hash (or count) to what was expected. Kind 'internal': the data is bad, not the request. */
export class ContentVerificationError extends BerthError {
  readonly expected: ExpectedBlob;
  readonly actual: { digest?: string; size: number };
  constructor(expected: ExpectedBlob, actual: { digest?: string; size: number }) {
    const want = `expected digest ${expected.digest} (size ${expected.size ?? 'unspecified'})`;
    const got = actual.digest === undefined ? `got more than ${actual.size - 1} bytes` : `got ${actual.digest} (size ${actual.size})`;
    super('internal', `content verification failed for ${expected.digest}: ${want}, ${got}`);
    this.name = 'ContentVerificationError';
    this.expected = expected;
    this.actual = actual;
  }
}

/** ENOSPC/EDQUOT become RESOURCE_EXHAUSTED so callers (and kubelet's image GC) see a disk problem, not a bug. */
function ioError(err: unknown, what: string): Error {
  if (err instanceof BerthError) return err;
  if (errnoCode(err) === 'ENOSPC' || errnoCode(err) === 'EDQUOT') {
    return resourceExhausted(`disk full while writing ${what}: ${errorMessage(err)}`, err);
  }
  return new BerthError('internal', `writing ${what} failed: ${errorMessage(err)}`, { cause: err });
}

function validateExpected(expected: ExpectedBlob): ExpectedBlob {
  assertDigest(expected.digest);
  const { size } = expected;
  if (size !== undefined && (!Number.isSafeInteger(size) || size < 0)) {
    throw invalidArgument(`blob size ${size} for ${expected.digest} is not a non-negative integer`);
  }
  return { digest: expected.digest, size };
}

type WriterState = 'writing' | 'verified' | 'committed' | 'aborted';

/**
 * A Writable that ingests one blob. Bytes go to a fresh temp file and into a running sha256; when the
 * stream finishes the file is fsynced and verified, so a pipeline feeding it already rejects on bad
 * content. commit() then publishes the blob; abort() (or destroying the stream) removes the temp.
 */
export class ContentWriter extends Writable {
  readonly expected: ExpectedBlob;
  readonly #store: ContentStore;
  readonly #tempPath: string;
  readonly #hash: Hash = createHash('sha256');
  /** Opened eagerly so abort() can always wait for the temp to exist before deleting it. */
  readonly #opening: Promise<FileHandle>;
  #handle: FileHandle | undefined;
  #written = 0;
  #state: WriterState = 'writing';
  #cleanup: Promise<void> | undefined;
  #commit: Promise<BlobInfo> | undefined;

  constructor(store: ContentStore, expected: ExpectedBlob) {
    // Validate before super(): the base constructor already schedules _construct.
    const checked = validateExpected(expected);
    super({ highWaterMark: WRITER_HIGH_WATER_MARK, decodeStrings: true });
    this.#store = store;
    this.expected = checked;
    this.#tempPath = tempSibling(join(store.ingestDir, digestHex(expected.digest)));
    this.#opening = open(this.#tempPath, 'wx', BLOB_MODE);
    // The failure is reported through _construct; this only keeps it from counting as unhandled.
    this.#opening.catch(() => undefined);
  }

  /** Bytes accepted so far (for progress reporting). */
  get written(): number {
    return this.#written;
  }

  override _construct(callback: (error?: Error | null) => void): void {
    this.#opening.then(
      (handle) => {
        this.#handle = handle;
        callback();
      },
      (err: unknown) => callback(ioError(err, `ingest file for ${this.expected.digest}`)),
    );
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this._writev([{ chunk }], callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    const buffers = chunks.map((c) => c.chunk);
    const error = this.#account(buffers);
    if (error) {
      callback(error);
      return;
    }
    Promise.resolve()
      .then(() => writeAll(this.#requireHandle(), buffers, `blob ${this.expected.digest}`))
      .then(
      () => callback(),
      (err: unknown) => callback(ioError(err, this.expected.digest)),
    );
  }

  /** Hash and count incoming bytes; fail as soon as a known size is exceeded. */
  #account(buffers: Buffer[]): Error | undefined {
    for (const buf of buffers) {
      this.#hash.update(buf);
      this.#written += buf.length;
    }
    const { size } = this.expected;
    if (size !== undefined && this.#written > size) {
      return new ContentVerificationError(this.expected, { size: size + 1 });
    }
    return undefined;
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#finishAndVerify().then(
      () => callback(),
      (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))),
    );
  }

  /** fsync + close the temp, then compare what was written against what was expected. */
  async #finishAndVerify(): Promise<void> {
    const handle = this.#requireHandle();
    try {
      await handle.sync();
    } catch (err) {
      throw ioError(err, this.expected.digest);
    }
    this.#handle = undefined;
    await handle.close();
    const actual = { digest: `sha256:${this.#hash.digest('hex')}`, size: this.#written };
    const { digest, size } = this.expected;
    if (actual.digest !== digest || (size !== undefined && size !== actual.size)) {
      throw new ContentVerificationError(this.expected, actual);
    }
    this.#state = 'verified';
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // autoDestroy runs this after a clean finish too; the verified temp must then survive until commit.
    if (this.#state === 'verified' && !error) {
      callback(error);
      return;
    }
    if (this.#state === 'writing') this.#state = 'aborted';
    this.#removeTemp().then(
      () => callback(error),
      () => callback(error),
    );
  }

  #requireHandle(): FileHandle {
    if (!this.#handle) throw new BerthError('internal', `ingest file for ${this.expected.digest} is not open`);
    return this.#handle;
  }

  #removeTemp(): Promise<void> {
    this.#cleanup ??= (async () => {
      // If the open is still in flight, let it land so the file it creates is the one we delete.
      const handle = this.#handle ?? (await this.#opening.catch(() => undefined));
      this.#handle = undefined;
      await handle?.close().catch(() => undefined);
      await rm(this.#tempPath, { force: true });
    })();
    return this.#cleanup;
  }

  /**
   * Publish the verified blob. Ends the stream if the caller hasn't, waits for it to finish, and
   * rethrows whatever made the write fail (verification, disk full). Idempotent.
   */
  commit(): Promise<BlobInfo> {
    this.#commit ??= this.#doCommit();
    return this.#commit;
  }

  async #doCommit(): Promise<BlobInfo> {
    if (!this.writableEnded && !this.destroyed) this.end();
    try {
      await finished(this);
    } catch (err) {
      await this.#removeTemp();
      if (err instanceof BerthError) throw err;
      throw failedPrecondition(`ingest of ${this.expected.digest} was aborted before commit: ${errorMessage(err)}`);
    }
    if (this.#state !== 'verified') {
      await this.#removeTemp();
      throw failedPrecondition(`ingest of ${this.expected.digest} was aborted before commit`);
    }
    await this.#publish();
    this.#state = 'committed';
    return { digest: this.expected.digest, size: this.#written };
  }

  /** Rename into place unless a concurrent writer got there first (same bytes, so keep theirs). */
  async #publish(): Promise<void> {
    const target = this.#store.path(this.expected.digest);
    try {
      if (await this.#store.has(this.expected.digest)) {
        await rm(this.#tempPath, { force: true });
        return;
      }
      await rename(this.#tempPath, target);
      await syncDir(this.#store.blobDir);
    } catch (err) {
      await rm(this.#tempPath, { force: true });
      throw ioError(err, this.expected.digest);
    }
  }

  /** Drop the ingest: stop the stream and delete the temp. Safe to call at any point, any number of times. */
  async abort(): Promise<void> {
    if (this.#state === 'committed') return;
    this.#state = 'aborted';
    if (!this.destroyed) this.destroy();
    await this.#removeTemp();
  }
}

export class ContentStore {
  readonly root: string;
  readonly blobDir: string;
  readonly ingestDir: string;

  constructor(root: string) {
    this.root = root;
    this.blobDir = join(root, 'blobs', 'sha256');
    this.ingestDir = join(root, 'ingest');
  }

  /** Create the directories and sweep temp files a crash (or kill -9) left behind. Call once at startup. */
  async init(): Promise<void> {
    await mkdir(this.blobDir, { recursive: true });
    await mkdir(this.ingestDir, { recursive: true });
    for (const name of await readdir(this.ingestDir)) {
      await rm(join(this.ingestDir, name), { recursive: true, force: true });
    }
    // put() writes through writeFileAtomic, whose temps sit beside the blobs as .<hex>.tmp-<rand>.
    for (const name of await readdir(this.blobDir)) {
      if (name.startsWith('.') && name.includes('.tmp-')) await rm(join(this.blobDir, name), { force: true });
    }
  }

  path(digest: string): string {
    return join(this.blobDir, digestHex(digest));
  }

  async size(digest: string): Promise<number | undefined> {
    try {
      return (await stat(this.path(digest))).size;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  async has(digest: string): Promise<boolean> {
    return (await this.size(digest)) !== undefined;
  }

  async readBuffer(digest: string): Promise<Buffer> {
    try {
      return await readFile(this.path(digest));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') throw notFound(`content ${digest} not found`);
      throw err;
    }
  }

  /**
   * Stream a blob (optionally a byte range, inclusive `end` as in fs). The file is opened before this
   * resolves, so a missing blob is a NOT_FOUND here rather than an error event mid-response.
   */
  async createReadStream(digest: string, range: { start?: number; end?: number } = {}): Promise<ReadStream> {
    let handle: FileHandle;
    try {
      handle = await open(this.path(digest), 'r');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') throw notFound(`content ${digest} not found`);
      throw err;
    }
    return handle.createReadStream({ start: range.start, end: range.end, autoClose: true });
  }

  /** Start ingesting a blob; see ContentWriter for the commit/abort contract. */
  writer(expected: ExpectedBlob): ContentWriter {
    return new ContentWriter(this, expected);
  }

  /** Stream `source` into the store and commit it; on any failure nothing is left behind. */
  async ingest(expected: ExpectedBlob, source: Readable | AsyncIterable<Uint8Array>): Promise<BlobInfo> {
    const writer = this.writer(expected);
    try {
      await pipeline(source, writer);
      return await writer.commit();
    } catch (err) {
      await writer.abort();
      throw err;
    }
  }

  /** Store a small blob held in memory (manifest, config, index) after verifying its digest. */
  async put(digest: string, bytes: Uint8Array): Promise<BlobInfo> {
    const expected = validateExpected({ digest });
    const actual = sha256(bytes);
    if (actual !== digest) throw new ContentVerificationError(expected, { digest: actual, size: bytes.length });
    const info = { digest, size: bytes.length };
    if (await this.has(digest)) return info;
    try {
      await writeFileAtomic(this.path(digest), bytes, BLOB_MODE);
    } catch (err) {
      throw ioError(err, digest);
    }
    return info;
  }

  /** Remove a blob; false if it wasn't there. Callers (GC) decide what is unreferenced. */
  async delete(digest: string): Promise<boolean> {
    const path = this.path(digest);
    try {
      await rm(path);
      return true;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return false;
      throw err;
    }
  }

  async list(): Promise<BlobInfo[]> {
    const names = (await readdir(this.blobDir)).filter((name) => HEX_RE.test(name)).sort();
    const infos = await Promise.all(names.map(async (hex) => ({ digest: `sha256:${hex}`, size: await this.size(`sha256:${hex}`) })));
    // A blob deleted between readdir and stat simply isn't listed.
    return infos.filter((info): info is BlobInfo => info.size !== undefined);
  }

  async usage(): Promise<{ bytes: number; count: number }> {
    const blobs = await this.list();
    return { bytes: blobs.reduce((sum, b) => sum + b.size, 0), count: blobs.length };
  }
}
