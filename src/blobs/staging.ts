/** Staging on local disk, shared by the adapters: bytes streamed to a private file while hashed and counted. */
import { open, rm } from "node:fs/promises";
import { join } from "node:path";
import { BlobTooLargeError } from "./port.ts";

export interface StagedFile {
  sha256: string;
  size: number;
  path: string;
  /** The first bytes (up to HEAD_BYTES), for checks of what the content is. */
  head: Uint8Array;
}

/** How many leading bytes staging keeps in memory for the caller's checks. */
export const HEAD_BYTES = 1024;

/**
 * Writes `chunks` to a new file in `dir` (mode 0600), hashing them, and syncs it to disk. Past
 * `maxBytes` it stops reading (the source is cancelled), removes the file and throws BlobTooLargeError.
 */
export async function stageToDisk(dir: string, chunks: AsyncIterable<Uint8Array>, maxBytes = Number.MAX_SAFE_INTEGER): Promise<StagedFile> {
  const path = join(dir, `${crypto.randomUUID()}.part`);
  const handle = await open(path, "wx", 0o600);
  const hasher = new Bun.CryptoHasher("sha256");
  const head = new Uint8Array(HEAD_BYTES);
  let size = 0;
  try {
    for await (const chunk of chunks) {
      if (size < HEAD_BYTES) head.set(chunk.subarray(0, HEAD_BYTES - size), size);
      size += chunk.byteLength;
      if (size > maxBytes) throw new BlobTooLargeError(maxBytes);
      hasher.update(chunk);
      let written = 0;
      while (written < chunk.byteLength) written += (await handle.write(chunk, written, chunk.byteLength - written)).bytesWritten;
    }
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => {});
    await rm(path, { force: true });
    throw err;
  }
  await handle.close();
  return { sha256: hasher.digest("hex"), size, path, head: head.slice(0, Math.min(size, HEAD_BYTES)) };
}

/** The chunks of a byte array or a string, for staging content already in memory. */
export async function* chunksOf(content: Uint8Array | string): AsyncIterable<Uint8Array> {
  yield typeof content === "string" ? new TextEncoder().encode(content) : content;
}
