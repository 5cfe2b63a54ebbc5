/**
 * Sessions named by a client's own id (Magus `session_id`, MUXI `session_id`): "same id, same
 * conversation", created on first use. No mapping table: our session id is derived from the client's id
 * (with the surface, app and user as namespace), so the first use races safely — two requests starting
 * the same conversation both derive the same id and the session's stream accepts one `SessionStarted`.
 * The client's id is kept as the session's `external_ref`, so `/v1` finds the conversation by it
 * (`GET /v1/sessions?external_ref=…`).
 */
import { createHash } from "node:crypto";
import type { AppContext } from "../../app/context.ts";
import type { CommandMetadata } from "../../app/repository.ts";
import { ConflictError, NotFoundError } from "../../core/errors.ts";
import { readYourWrites } from "../../app/context.ts";
import { getSession, type SessionRow } from "../../../projections/sessions/index.ts";

/**
 * Our session id for a client's conversation id: stable, and distinct per surface, app and user — or,
 * with `userId` null, per surface and app (an id the whole app shares, whichever key or user sends it).
 */
export function clientSessionId(surface: string, appId: string, userId: string | null, clientId: string): string {
  // "\u0001" cannot start a user id, so an app-wide id never equals a user's.
  const parts = userId === null ? [surface, appId, "\u0001app", clientId] : [surface, appId, userId, clientId];
  const digest = createHash("sha256").update(parts.join("\0")).digest("hex");
  return `sess_${surface}_${digest.slice(0, 32)}`;
}

export interface ClientSession {
  /** The session's read-model row (as `requireSession` would give it), readable now. */
  row: SessionRow;
  /** Whether this request started it. */
  created: boolean;
}

/**
 * The session for `clientId`, started now (for `agentId`, as `userId`) when it does not exist yet.
 * 404 `session_not_found` when it existed and was deleted: a deleted conversation is not silently
 * started again under the same id, whose history auditors still see.
 */
export async function sessionForClientId(
  ctx: AppContext,
  input: {
    surface: string; clientId: string; agentId: string; userId: string; name?: string;
    /** `app`: the client's id names one session for the whole app (started as `userId`); default `user`: one per user. */
    scope?: "user" | "app";
  },
  meta: CommandMetadata, signal?: AbortSignal,
): Promise<ClientSession> {
  const id = clientSessionId(input.surface, ctx.appId, input.scope === "app" ? null : input.userId, input.clientId);
  let created = false;
  const { state } = await ctx.repos.sessions.load(id);
  if (state.status === "none") {
    try {
      const r = await ctx.repos.sessions.handle(id, {
        type: "StartSession", session_id: id, agent_id: input.agentId, user_id: input.userId,
        name: input.name ?? input.clientId.slice(0, 200), external_ref: input.clientId, metadata: { surface: input.surface },
      }, meta);
      created = true;
      await readYourWrites(ctx, r.position, signal);
    } catch (err) {
      // Another request started it first: the same conversation, as the client asked.
      if (!(err instanceof ConflictError)) throw err;
    }
  }
  const row = getSession(ctx.db, ctx.appId, id) ?? (await waitForRow(ctx, id, signal));
  if (!row) throw new NotFoundError("This session's conversation was deleted; use another session id", { param: "session_id" }, "session_not_found");
  return { row, created };
}

/** The row of a session another request started a moment ago, once the read model has it. */
async function waitForRow(ctx: AppContext, id: string, signal?: AbortSignal): Promise<SessionRow | null> {
  const { state } = await ctx.repos.sessions.load(id);
  if (state.status !== "active") return null;
  await readYourWrites(ctx, await ctx.store.headPosition(), signal);
  return getSession(ctx.db, ctx.appId, id);
}
