/**
 * How events that outlive an erasure name an end user: only by a SHA-256 of their id. Streams kept after
 * the user's own are erased (blob references, usage-limit pools, the erasure record) must not carry the
 * id in clear, in their data or their metadata.
 */
import type { CommandMetadata } from "./repository.ts";

/** SHA-256 (hex) of a user id: how kept streams and the erasure record name the user. */
export const userHash = (userId: string): string => Bun.SHA256.hash(userId, "hex") as string;

/**
 * The metadata with no `attributedUserId`, and an end user's own actor (`user:<id>` or `user:<id>@key:<k>`)
 * as `user:sha256:<hash>…`. Other actors (keys, admins) name no end user and stay as they are.
 */
export function pseudonymousMeta(meta: CommandMetadata): CommandMetadata {
  const { attributedUserId: _, ...rest } = meta;
  const actor = meta.actor?.match(/^user:(?!sha256:)(.*?)(@key:[^@]*)?$/);
  return actor ? { ...rest, actor: `user:sha256:${userHash(actor[1]!)}${actor[2] ?? ""}` } : rest;
}
