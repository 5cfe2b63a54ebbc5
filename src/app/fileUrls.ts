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
   * Checks a URL's signature, then its expiry: 403 `invalid_signature` for a missing, malformed or
   * wrong signature (anything changed in the URL), 403 `signature_expired` past its expiry.
   */
  verify(purpose: UrlPurpose, fileId: string, expires: string | null, sig: string | null, now = Date.now()): void {
    if (!expires || !/^[0-9]{1,12}$/.test(expires) || !sig || !/^[0-9a-f]{64}$/.test(sig)) {
      throw new ForbiddenError("This URL is not signed, or its signature is malformed", "invalid_signature");
    }
    const expected = Buffer.from(this.sign(purpose, fileId, Number(expires)), "hex");
    if (!timingSafeEqual(expected, Buffer.from(sig, "hex"))) throw new ForbiddenError("This URL's signature does not match", "invalid_signature");
    if (now > Number(expires) * 1000) throw new ForbiddenError("This URL has expired; ask for a new one", "signature_expired");
  }
}

async function readSealed(store: EventStore): Promise<string | null> {
  try {
    for await (const e of store.readStream(fileSigningStream(), { maxCount: 1 })) return fileSigningEvents.decode(e).data.sealed;
  } catch (err) {
    if (!(err instanceof StreamNotFoundError)) throw err;
  }
  return null;
}
