/**
 * The local-disk blob store, the embedded default: `<root>/sha256/<ab>/<hash>`, written atomically (a
 * staged file, synced, then renamed into place), so a reader never sees part of a blob and a crash
 * leaves either the whole blob or none. Identical content is stored once.
 */
import { existsSync } from "node:fs";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { preparePrivateDir } from "../core/privateFiles.ts";
import { checkSha256, parkedHash, type BlobStore, type ParkedBlob, type StagedBlob } from "./port.ts";
import { stageToDisk } from "./staging.ts";

export class LocalBlobStore implements BlobStore {
  readonly kind = "local" as const;
  private readonly staging: string;
  private readonly parked: string;

  constructor(private readonly root: string) {
    this.staging = join(root, "staging");
    this.parked = join(root, "parked");
    for (const dir of [root, this.staging, this.parked, join(root, "sha256")]) preparePrivateDir(dir);
  }

  /** Where a blob lives (for tests and operators: the layout is documented in docs/operations.md). */
  pathOf(sha256: string): string {
    checkSha256(sha256);
    return join(this.root, "sha256", sha256.slice(0, 2), sha256);
  }

  async stage(chunks: AsyncIterable<Uint8Array>, options: { maxBytes?: number } = {}): Promise<StagedBlob> {
    const staged = await stageToDisk(this.staging, chunks, options.maxBytes);
    return { sha256: staged.sha256, size: staged.size, ref: staged.path, head: staged.head };
  }

  async commit(staged: StagedBlob): Promise<void> {
    const target = this.pathOf(staged.sha256);
    if (existsSync(target)) return this.discard(staged);
    await mkdir(dirname(target), { recursive: true, mode: 0o700 });
    // Atomic: a reader sees the whole blob or none; a concurrent commit of the same bytes writes the same content.
    await rename(staged.ref, target);
  }

  async discard(staged: StagedBlob): Promise<void> {
    await rm(staged.ref, { force: true });
  }

  async has(sha256: string): Promise<boolean> {
    return existsSync(this.pathOf(sha256));
  }

  async open(sha256: string): Promise<Blob | null> {
    const path = this.pathOf(sha256);
    const info = await stat(path).catch(() => null);
    return info ? Bun.file(path) : null;
  }

  async park(sha256: string): Promise<ParkedBlob | null> {
    const parked = join(this.parked, `${sha256}.${crypto.randomUUID()}`);
    try {
      await rename(this.pathOf(sha256), parked);
      return parked;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
  }

  async restore(sha256: string, parked: ParkedBlob): Promise<void> {
    const target = this.pathOf(sha256);
    if (existsSync(target)) return this.purge(parked);
    try {
      await rename(parked, target);
    } catch (err) {
      // Another restorer (a read that found the blob missing, recovery at start-up) got there first.
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }

  async purge(parked: ParkedBlob): Promise<void> {
    await rm(parked, { force: true });
  }

  async parkedCopies(sha256?: string): Promise<Array<{ sha256: string; parked: ParkedBlob }>> {
    if (sha256 !== undefined) checkSha256(sha256);
    const names = await readdir(this.parked).catch(() => [] as string[]);
    return names.flatMap((name) => {
      const hash = parkedHash(name);
      return hash && (sha256 === undefined || hash === sha256) ? [{ sha256: hash, parked: join(this.parked, name) }] : [];
    });
  }
}
