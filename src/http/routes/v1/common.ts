/** What the /v1 route modules share: dependencies, request metadata, idempotent creation, views. */
import { Elysia, t } from "elysia";
import type { AppContext } from "../../../app/context.ts";
import type { CommandMetadata } from "../../../app/repository.ts";
import type { JobRow } from "../../../../projections/jobs/index.ts";
import type { SessionRow } from "../../../../projections/sessions/index.ts";
import { readYourWrites } from "../../../app/context.ts";
import { credentialOf, idempotent, type IdempotentRun } from "../../idempotency.ts";
import { clientRequestId, requestIdOf } from "../../requestGuard.ts";
import { principalOf } from "../../auth.ts";
import type { EndUserTokens } from "../../../auth/endUserTokens.ts";
import { dataAppId } from "../../../app/access.ts";
import type { ShippedSkill } from "../../../app/skills.ts";
import type { Citation } from "../../../domain/shared/citations.ts";

export interface V1Deps {
  ctx: AppContext;
  /** Mints and checks end-user tokens (absent: the server does not offer them). */
  endUserTokens?: EndUserTokens;
  /** The skills shipped with the server (SKILLS_DIR), by name (absent: none). */
  skills?: ReadonlyMap<string, ShippedSkill>;
}

/**
 * The context a request acts in: the server's, with the caller's app (from its key). Every read and
 * write a route makes goes through it, so what a request touches is its own app's. Shared as is for
 * the default app, the common case, so that case costs nothing.
 */
export function forCaller(ctx: AppContext, request: Request): AppContext {
  const principal = principalOf(request);
  if (!principal) return ctx;
  const appId = dataAppId(principal.appId, principal.mode);
  if (appId === ctx.appId && principal.agentIds === null && principal.userId === null) return ctx;
  return { ...ctx, appId, allowedAgents: principal.agentIds, actingUser: principal.userId };
}

/** For a long-lived answer (SSE): whether the request's credential still works now. */
export const stillAuthorized = (request: Request) => (): boolean => principalOf(request)?.stillValid() ?? true;

/** The plugin a route module starts with: each handler gets `ctx`, the caller's context. */
export const callerContext = (deps: V1Deps) =>
  // Unnamed on purpose: Elysia would register a named plugin once, in the first module that uses it.
  new Elysia().resolve({ as: "scoped" }, ({ request }) => ({ ctx: forCaller(deps.ctx, request) }));

export const iso = (ms: number | null | undefined): string | null => (ms === null || ms === undefined ? null : new Date(ms).toISOString());
export const parseJson = <T = unknown>(s: string | null): T | null => (s === null ? null : (JSON.parse(s) as T));

/**
 * The metadata of what a request writes: its app, its actor (the key, or the end user's token and the
 * key that minted it) and, when it acts for an end user, that user (`attributed_user_id`): the user a
 * server key sends a message or starts a session for, or the user of an end-user token.
 */
export const metaOf = (ctx: AppContext, request: Request, forUser?: string): CommandMetadata => {
  const principal = principalOf(request);
  const actor = principal ? (principal.endUser ? `user:${principal.userId}@key:${principal.keyId}` : `key:${principal.keyId}`) : undefined;
  const attributed = forUser ?? ctx.actingUser ?? undefined;
  const requestId = requestIdOf(request);
  return {
    appId: ctx.appId, correlationId: clientRequestId(request) ?? undefined, now: Date.now(), ...(requestId ? { requestId } : {}),
    ...(actor ? { actor } : {}), ...(attributed ? { attributedUserId: attributed } : {}),
  };
};

export type ResponseSet = { status?: number | string; headers: Record<string, string | number> };

/** The request being answered and its response settings, as a route handler has them. */
export interface HttpExchange {
  request: Request;
  set: ResponseSet;
}

/**
 * Runs a creating POST under its Idempotency-Key (if any) and sets status and replay header.
 * `idPrefixes` names the resources it creates; see `idempotent` for what `run` receives.
 */
export async function create<Body>(
  ctx: AppContext,
  request: Request,
  body: unknown,
  set: ResponseSet,
  idPrefixes: Record<string, string>,
  run: (r: IdempotentRun) => Promise<{ status: number; body: Body }>,
): Promise<Body> {
  const key = request.headers.get("idempotency-key");
  const credential = credentialOf(principalOf(request));
  const r = await idempotent(ctx, key, { method: request.method, path: new URL(request.url).pathname, body }, idPrefixes, run, { credential, meta: metaOf(ctx, request) });
  set.status = r.status;
  if (r.replayed) set.headers["idempotent-replayed"] = "true";
  // A replay returns the body recorded for this route's response, so it has this route's shape.
  return r.body as Body;
}

/**
 * After a committed write: waits (bounded) for the read models to include it. When they lag, the
 * response says so (`x-read-your-writes: pending`) and the caller answers from the events it wrote.
 */
export async function afterWrite(ctx: AppContext, http: HttpExchange, position: bigint | null): Promise<boolean> {
  const { set, request } = http;
  const fresh = await readYourWrites(ctx, position, request.signal);
  if (!fresh) set.headers["x-read-your-writes"] = "pending";
  return fresh;
}

const Id = t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" });
export const IdParam = <K extends string>(name: K) => t.Object({ [name]: Id } as Record<K, typeof Id>);

const usageOf = (r: { prompt_tokens: number; completion_tokens: number; cached_tokens: number; reasoning_tokens: number }) => ({
  prompt_tokens: r.prompt_tokens, completion_tokens: r.completion_tokens, cached_tokens: r.cached_tokens, reasoning_tokens: r.reasoning_tokens,
});

export function sessionView(r: SessionRow) {
  const turns = JSON.parse(r.turns) as string[];
  return {
    id: r.id, object: "session" as const, agent_id: r.agent_id, user_id: r.user_id, name: r.name, external_ref: r.external_ref,
    metadata: JSON.parse(r.metadata) as Record<string, unknown>,
    status: turns.length ? "processing" as const : "idle" as const,
    active_job_id: turns[0] ?? null, queued_job_ids: turns.slice(1), archived: r.archived === 1,
    message_count: r.message_count, asset_count: r.asset_count, usage: usageOf(r), credits_spent: r.credits_spent,
    created_at: iso(r.created_at)!, updated_at: iso(r.updated_at)!, last_activity_at: iso(r.last_activity_at)!,
  };
}

export function jobView(r: JobRow) {
  return {
    id: r.id, object: "job" as const, kind: r.kind, session_id: r.session_id, message_id: r.message_id, agent_id: r.agent_id, user_id: r.user_id,
    status: r.status, input: parseJson(r.input), content: r.content, result: parseJson(r.result), error: parseJson(r.error),
    approval: parseJson(r.approval), cancel_requested: r.cancel_requested === 1, attempts: r.attempts, usage: usageOf(r),
    credits_spent: r.credits_spent, created_at: iso(r.created_at)!, started_at: iso(r.started_at), completed_at: iso(r.completed_at),
    citations: parseJson<Citation[]>(r.citations) ?? [],
  };
}

export const Attachment = t.Object({
  type: t.Union([t.Literal("url"), t.Literal("asset"), t.Literal("file")]),
  url: t.Optional(t.String({ maxLength: 4096, pattern: "^https?://" })),
  asset_label: t.Optional(t.String({ pattern: "^asset_[0-9]+$" })),
  name: t.Optional(t.String({ maxLength: 255 })),
  content_type: t.Optional(t.String({ maxLength: 255 })),
  // Stored as a file before the message is recorded (the event names it): bounded by MAX_BODY_BYTES and MAX_FILE_BYTES.
  data: t.Optional(t.String({ maxLength: 1_500_000_000, description: "base64 content of an inline file: stored as a file of the session, which the message then names" })),
  file_id: t.Optional(t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$", description: "an uploaded file (POST /v1/sessions/{session_id}/files or /v1/uploads)" })),
});
