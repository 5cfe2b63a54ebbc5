/**
 * The S3-compatible blob store, through Bun's built-in S3 client (AWS S3, MinIO, R2, …): objects
 * `<prefix>sha256/<hash>`. Bytes are staged on local disk while they are hashed (the key is the hash,
 * known only at the end), then uploaded once; content already stored is not uploaded again. Parking
 * copies the object under `<prefix>parked/` and deletes it, as S3 has no rename.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { preparePrivateDir } from "../core/privateFiles.ts";
import { checkSha256, parkedHash, type BlobStore, type ParkedBlob, type StagedBlob } from "./port.ts";
import { stageToDisk } from "./staging.ts";

export interface S3BlobStoreOptions {
  endpoint?: string;
  bucket: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  region?: string;
  /** Key prefix for every object this store writes ("" for the bucket's root). */
  prefix?: string;
  /** Local folder for staging copies. */
  stagingDir: string;
  virtualHostedStyle?: boolean;
}

export class S3BlobStore implements BlobStore {
  readonly kind = "s3" as const;
  private readonly client: Bun.S3Client;
  private readonly prefix: string;

  constructor(private readonly options: S3BlobStoreOptions) {
    this.client = new Bun.S3Client({
      bucket: options.bucket,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      ...(options.accessKeyId ? { accessKeyId: options.accessKeyId } : {}),
      ...(options.secretAccessKey ? { secretAccessKey: options.secretAccessKey } : {}),
      ...(options.region ? { region: options.region } : {}),
      ...(options.virtualHostedStyle ? { virtualHostedStyle: true } : {}),
    });
    this.prefix = options.prefix ?? "";
    preparePrivateDir(options.stagingDir);
  }

  /** The object key of a blob. */
  keyOf(sha256: string): string {
    return `${this.prefix}sha256/${checkSha256(sha256)}`;
  }

  async stage(chunks: AsyncIterable<Uint8Array>, options: { maxBytes?: number } = {}): Promise<StagedBlob> {
    const staged = await stageToDisk(this.options.stagingDir, chunks, options.maxBytes);
    return { sha256: staged.sha256, size: staged.size, ref: staged.path, head: staged.head };
  }

  async commit(staged: StagedBlob): Promise<void> {
    try {
      const key = this.keyOf(staged.sha256);
      if (!(await this.client.exists(key))) await this.client.write(key, Bun.file(staged.ref), { type: "application/octet-stream" });
    } finally {
      await this.discard(staged);
    }
  }

  async discard(staged: StagedBlob): Promise<void> {
    await rm(staged.ref, { force: true });
  }

  async has(sha256: string): Promise<boolean> {
    return this.client.exists(this.keyOf(sha256));
  }

  async open(sha256: string): Promise<Blob | null> {
    const key = this.keyOf(sha256);
    return (await this.client.exists(key)) ? this.client.file(key) : null;
  }

  async park(sha256: string): Promise<ParkedBlob | null> {
    const key = this.keyOf(sha256);
    if (!(await this.client.exists(key))) return null;
    const parked = `${this.prefix}parked/${sha256}.${crypto.randomUUID()}`;
    await this.client.write(parked, this.client.file(key));
    await this.client.delete(key);
    return parked;
  }

  async restore(sha256: string, parked: ParkedBlob): Promise<void> {
    const key = this.keyOf(sha256);
    if (!(await this.client.exists(key))) {
      try {
        await this.client.write(key, this.client.file(parked));
      } catch (err) {
        // Another restorer (a read that found the blob missing, recovery at start-up) got there first.
        if (!(await this.client.exists(key))) throw err;
      }
    }
    await this.purge(parked);
  }

  async purge(parked: ParkedBlob): Promise<void> {
    await this.client.delete(parked);
  }

  async parkedCopies(sha256?: string): Promise<Array<{ sha256: string; parked: ParkedBlob }>> {
    const folder = `${this.prefix}parked/`;
    const out: Array<{ sha256: string; parked: ParkedBlob }> = [];
    let continuationToken: string | undefined;
    do {
      const page = await this.client.list({ prefix: folder + (sha256 === undefined ? "" : `${checkSha256(sha256)}.`), ...(continuationToken ? { continuationToken } : {}) });
      for (const object of page.contents ?? []) {
        const hash = parkedHash(object.key.slice(folder.length));
        if (hash) out.push({ sha256: hash, parked: object.key });
      }
      continuationToken = page.isTruncated ? page.nextContinuationToken : undefined;
    } while (continuationToken);
    return out;
  }
}

/** The staging folder an S3 store uses under the data folder. */
export const s3StagingDir = (dataDir: string) => join(dataDir, "blobs", "staging");
