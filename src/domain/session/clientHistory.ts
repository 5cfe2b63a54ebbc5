/**
 * What is kept of a client's own copy of a conversation (MUAPI's `PATCH /sessions/{id}/messages`, and
 * the `messages_snapshot` of a chat or skill run): how many messages, and the SHA-256 and size of
 * their canonical JSON. Enough for an auditor to check a copy the client shows against what it sent,
 * without storing the copy itself: the session's events already are the history, and a full copy per
 * save would grow the stream with every turn and, past one write's cap, fail.
 */
import { createHash } from "node:crypto";
import { canonicalJson } from "../../core/canonicalJson.ts";

export interface ClientHistoryDigest {
  count: number;
  /** SHA-256 (hex) of the messages' canonical JSON (src/core/canonicalJson.ts: keys sorted, no spaces). */
  sha256: string;
  /** UTF-8 bytes of that JSON. */
  bytes: number;
}

export function clientHistoryDigest(messages: readonly unknown[]): ClientHistoryDigest {
  const text = canonicalJson(messages);
  return { count: messages.length, sha256: createHash("sha256").update(text).digest("hex"), bytes: Buffer.byteLength(text, "utf8") };
}
