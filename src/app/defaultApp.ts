/**
 * The default app, which the embedded quick start and single-tenant deployments use: created on first
 * start, with the configured key (`API_KEY`, or the key generated into the data folder) as its live
 * key. When that key changes between starts, the previous one stops working: the configuration says
 * which key is the default app's, and only it.
 */
import { ConflictError } from "../core/errors.ts";
import { newResourceId } from "../core/ids.ts";
import type { KeyScope } from "../domain/app/events.ts";
import { keyHash, keyPrefix } from "../domain/app/keys.ts";
import { DEFAULT_APP_ID } from "../domain/streams.ts";
import type { CommandMetadata } from "./repository.ts";
import type { Repositories } from "./context.ts";

/** The name the configured key is issued under, so a later start finds it. */
export const CONFIGURED_KEY_NAME = "default (configured)";

/**
 * The configured key's scopes: the data plane's, all of them. Audit reads (`audit:read`) are asked for
 * on a key of their own, or made with the root token; listed here so every start issues the same key.
 */
const DEFAULT_KEY_SCOPES: readonly KeyScope[] = ["data:read", "data:write", "agents:manage"];

/** Makes sure the default app exists and `key` is its one configured key; returns the last position written. */
export async function ensureDefaultApp(repos: Pick<Repositories, "apps">, key: string, meta: CommandMetadata): Promise<bigint | null> {
  let position: bigint | null = null;
  const { state } = await repos.apps.load(DEFAULT_APP_ID);
  if (state.status === "none") {
    try {
      position = (await repos.apps.handle(DEFAULT_APP_ID, { type: "CreateApp", app_id: DEFAULT_APP_ID, name: "Default app" }, meta)).position;
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err; // another process created it first
    }
  }
  const hash = keyHash(key);
  const handled = await repos.apps.handle(DEFAULT_APP_ID, (app) => {
    if (app.status !== "active") return []; // suspended or deleted by an operator: its keys stay refused
    const configured = app.keys.filter((k) => k.name === CONFIGURED_KEY_NAME && !k.revoked);
    const current = configured.some((k) => k.hash === hash);
    return [
      // The configuration names one key: earlier configured keys stop working.
      ...configured.filter((k) => k.hash !== hash).map((k) => ({ type: "RevokeKey" as const, key_id: k.key_id })),
      ...(current ? [] : [{
        type: "IssueKey" as const,
        key: {
          key_id: newResourceId("key"), name: CONFIGURED_KEY_NAME, prefix: keyPrefix(key), hash, mode: "live" as const,
          scopes: [...DEFAULT_KEY_SCOPES], agent_ids: null, user_id: null, expires_at: null,
        },
      }]),
    ];
  }, meta);
  return handled.position ?? position;
}
