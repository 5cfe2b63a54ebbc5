/**
 * Signed file URLs: an upload URL a client PUTs bytes to, and a download URL, both usable without an
 * API key, each for one file and until it expires. A URL carries `expires` (epoch seconds) and `sig`,
 * an HMAC-SHA256 over the purpose, the file id and the expiry, so neither can be changed.
 *
 * The HMAC key is shared by every process: generated once, sealed by the secret box, kept in the
 * `operator-file-signing` stream (as the end-user token key is).
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { ForbiddenError } from "../core/errors.ts";
import { newEventId, newResourceId } from "../core/ids.ts";
import type { Logger } from "../core/logger.ts";
import { fileSigningEvents } from "../domain/file/events.ts";
import { fileSigningStream } from "../domain/streams.ts";
import { StreamNotFoundError, WrongExpectedVersionError } from "../eventstore/errors.ts";
import type { EventStore } from "../eventstore/port.ts";
import type { SecretBox } from "../secrets/secretBox.ts";

export type UrlPurpose = "upload" | "download";

/** The secret box's owner for operator-wide secrets (not an app). */
const OPERATOR = "_operator";

export class FileUrls {
  private constructor(private readonly key: Buffer) {}

  /** Loads the signing key, creating it if no process has yet. */
  static async open(store: EventStore, secrets: SecretBox, logger?: Logger): Promise<FileUrls> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const existing = await readSealed(store);
      if (existing) return new FileUrls(Buffer.from(await secrets.open(OPERATOR, existing), "base64"));
      const sealed = await secrets.seal(OPERATOR, randomBytes(32).toString("base64"));
      const data = { key_id: newResourceId("fsk"), sealed };
      try {
        await store.appendToStream(fileSigningStream(), [{
          id: newEventId(), type: "FileSigningKeyCreated", data,
          metadata: { app_id: OPERATOR, actor: "system:file-urls", ...fileSigningEvents.encode({ type: "FileSigningKeyCreated", data }) },
        }], { expectedRevision: "no_stream" });
        logger?.info("created the file URL signing key");
      } catch (err) {
        if (!(err instanceof WrongExpectedVersionError)) throw err; // another process made it: read theirs
      }
    }
    throw new Error("could not load the file URL signing key");
  }

  /** The signature of (purpose, file, expiry), hex. */
  sign(purpose: UrlPurpose, fileId: string, expiresS: number): string {
    return new Bun.CryptoHasher("sha256", this.key).update(`agentry.file.${purpose}\n${fileId}\n${expiresS}`).digest("hex");
  }

  /** A signed URL under `base` (an origin), valid for `ttlS` seconds from `now` (ms). */
  url(base: string, purpose: UrlPurpose, fileId: string, ttlS: number, now = Date.now()): { url: string; expiresAt: number } {
    const expiresS = Math.floor(now / 1000) + ttlS;
    const path = purpose === "upload" ? "uploads" : "downloads";
    return { url: `${base}/${path}/${encodeURIComponent(fileId)}?expires=${expiresS}&sig=${this.sign(purpose, fileId, expiresS)}`, expiresAt: expiresS * 1000 };
  }

  /**
   * Checks a URL's query (`search`, as received, with its `?`), then its signature, then its expiry.
   * The query must be exactly as `url` writes it — `?expires=<epoch seconds, no leading zero>&sig=<64
   * lowercase hex>`, nothing added, repeated, reordered or encoded otherwise — so each signed URL has
   * one form: anything else is 403 `invalid_signature`, as is a wrong signature; past its expiry it is
   * 403 `signature_expired`.
   */
  verify(purpose: UrlPurpose, fileId: string, search: string, now = Date.now()): void {
    const m = CANONICAL_QUERY.exec(search);
    if (!m) throw new ForbiddenError("This URL is not signed, or not in the form it was signed in", "invalid_signature");
    const [, expires, sig] = m as unknown as [string, string, string];
    const expected = Buffer.from(this.sign(purpose, fileId, Number(expires)), "hex");
    if (!timingSafeEqual(expected, Buffer.from(sig, "hex"))) throw new ForbiddenError("This URL's signature does not match", "invalid_signature");
    if (now > Number(expires) * 1000) throw new ForbiddenError("This URL has expired; ask for a new one", "signature_expired");
  }
}

/** The one form of a signed URL's query, as `FileUrls.url` writes it. */
const CANONICAL_QUERY = /^\?expires=([1-9][0-9]{0,11})&sig=([0-9a-f]{64})$/;

async function readSealed(store: EventStore): Promise<string | null> {
  try {
    for await (const e of store.readStream(fileSigningStream(), { maxCount: 1 })) return fileSigningEvents.decode(e).data.sealed;
  } catch (err) {
    if (!(err instanceof StreamNotFoundError)) throw err;
  }
  return null;
}
