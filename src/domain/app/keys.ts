/**
 * API key material: a key is `agk_<mode>_<32 random characters>`, shown once when issued. What is kept
 * is its SHA-256 (to find it by, in constant time per request) and a short prefix people recognise.
 */
import { randomBytes } from "node:crypto";

export type KeyMode = "live" | "test";

export const newApiKey = (mode: KeyMode): string => `agk_${mode}_${randomBytes(24).toString("base64url")}`;

/** Runs on every request: Bun's one-shot SHA-256 is about four times cheaper than node:crypto's. */
export const keyHash = (key: string): string => Bun.SHA256.hash(key, "hex") as string;

/** The part of a key safe to show in lists: its kind and its first four random characters. */
export function keyPrefix(key: string): string {
  const match = /^(agk_(?:live|test)_)(.{4})/.exec(key);
  return match ? match[1]! + match[2]! : `${key.slice(0, 4)}…`;
}
