/**
 * The blob store port: file contents, content-addressed by their SHA-256 (hex), so identical bytes are
 * stored once whoever uploads them. Events never carry bytes: they name a blob by its hash.
 *
 * Writing is two-phase. `stage` streams the bytes to a private staging copy while hashing and
 * counting them (refusing past a limit without buffering more); only `commit` makes them readable
 * under their hash. Between the two the caller records that it references the blob (see
 * src/app/files.ts), so a collection running at the same moment cannot remove bytes a new file needs.
 *
 * Collecting a blob is two-phase too: `park` moves it out of sight, and the collector then either
 * `purge`s it (nothing references it: the removal is recorded) or `restore`s it (a reference arrived
 * meanwhile). A collector that stops in between leaves a parked copy, which `parkedCopies` finds for
 * recovery. Adapters: local disk (the embedded default) and S3-compatible storage.
 */

/** Bytes written to staging, hashed and counted, not yet readable under their hash. */
export interface StagedBlob {
  readonly sha256: string;
  readonly size: number;
  /** Where the adapter keeps the staged copy (opaque to callers). */
  readonly ref: string;
  /** The content's first bytes (up to 1 KiB), for checks of what it is before it is recorded. */
  readonly head: Uint8Array;
}

/** What `park` returns: the handle `purge` and `restore` take. */
export type ParkedBlob = string;

export interface BlobStore {
  readonly kind: "local" | "s3";
  /**
   * Streams `chunks` to a staging copy, hashing them. Throws `BlobTooLargeError` past `maxBytes` (the
   * staging copy is removed; what was not read yet is not read).
   */
  stage(chunks: AsyncIterable<Uint8Array>, options?: { maxBytes?: number }): Promise<StagedBlob>;
  /** Makes a staged blob readable under its hash (storing nothing new when those bytes are already there) and drops the staging copy. */
  commit(staged: StagedBlob): Promise<void>;
  /** Drops a staging copy that will not be committed. */
  discard(staged: StagedBlob): Promise<void>;
  /** Whether the blob is stored. */
  has(sha256: string): Promise<boolean>;
  /** The blob's bytes as a Blob (read lazily; `slice` reads a range), or null when it is not stored. */
  open(sha256: string): Promise<Blob | null>;
  /** Moves the blob out of sight; null when it was not stored. */
  park(sha256: string): Promise<ParkedBlob | null>;
  /** Puts a parked blob back (unless the same bytes were stored again meanwhile: then the parked copy is dropped). */
  restore(sha256: string, parked: ParkedBlob): Promise<void>;
  /** Removes a parked blob for good. */
  purge(parked: ParkedBlob): Promise<void>;
  /**
   * The parked copies there are now, of one blob or of all: what a collector that stopped between
   * `park` and `purge`/`restore` left behind, for recovery (src/app/files.ts, `recoverParked`).
   */
  parkedCopies(sha256?: string): Promise<Array<{ sha256: string; parked: ParkedBlob }>>;
  close?(): Promise<void>;
}

/** The bytes went past the limit the caller set. */
export class BlobTooLargeError extends Error {
  constructor(readonly maxBytes: number) {
    super(`The content is larger than ${maxBytes} bytes`);
    this.name = "BlobTooLargeError";
  }
}

export const SHA256_HEX = /^[0-9a-f]{64}$/;

/** The blob a parked copy's name (`<sha256>.<unique>`) holds; null for a name not of that form. */
export function parkedHash(name: string): string | null {
  const sha256 = name.slice(0, 64);
  return SHA256_HEX.test(sha256) && name[64] === "." && name.length > 65 ? sha256 : null;
}

/** Refuses anything but a lowercase hex SHA-256: a hash becomes a path or key, so nothing else may. */
export function checkSha256(sha256: string): string {
  if (!SHA256_HEX.test(sha256)) throw new Error(`Not a SHA-256 hex digest: ${sha256.slice(0, 80)}`);
  return sha256;
}
