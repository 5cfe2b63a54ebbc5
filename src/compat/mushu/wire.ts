/**
 * The Mushu Agents wire format (seed 000), as pure translations: request bodies, status words, the
 * views its client reads, and its FastAPI-style error envelope `{"detail": {…}}`. Nothing here does
 * I/O; the routes (index.ts) call our services and hand what they get to these functions.
 */
import { t } from "elysia";
import type { SessionRow } from "../../../projections/sessions/index.ts";
import type { MessageRow } from "../../../projections/messages/index.ts";
import type { JobRow } from "../../../projections/jobs/index.ts";
import type { ErrorBody, ErrorDialect } from "../../http/errors.ts";
import { paramOf } from "../shared/errors.ts";

/** Where the surface is mounted: Mushu's `POST /runs` is `POST /compat/mushu/runs`. */
export const MUSHU_PREFIX = "/compat/mushu";

/** Mushu's `GET /health` takes no key (the doc's "Auth: None"). */
export const MUSHU_HEALTH = `${MUSHU_PREFIX}/health`;

/** Nor does `POST /chatgpt/callback` (the doc's "Auth: None"): its sealed session_id is the credential. */
export const MUSHU_CHATGPT_CALLBACK = `${MUSHU_PREFIX}/chatgpt/callback`;

/** The paths of the surface that take no key. */
export const MUSHU_PUBLIC_PATHS = [MUSHU_HEALTH, MUSHU_CHATGPT_CALLBACK] as const;

const Name = t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" });
const UserId = t.String({ minLength: 1, maxLength: 200 });

export const RunBody = t.Object({
  user_id: UserId,
  workflow: Name,
  media_url: t.String({ pattern: "^https?://", maxLength: 4096, description: "The media (e.g. a food photo) the run analyses" }),
}, { additionalProperties: false });

export const ConversationBody = t.Object({ user_id: UserId, workflow: Name }, { additionalProperties: false });

export const MessageBody = t.Object({ content: t.String({ minLength: 1, maxLength: 100_000 }) }, { additionalProperties: false });

export const ConnectBody = t.Object({
  user_id: t.Optional(t.String({ minLength: 1, maxLength: 200, description: "Whose subscription: the user of an end-user token (or of a key bound to a user) when omitted" })),
}, { additionalProperties: false });

export const CallbackBody = t.Object({
  session_id: t.String({ minLength: 3, maxLength: 4096, description: "From POST /chatgpt/connect" }),
  url: t.String({ minLength: 1, maxLength: 8192, description: "The intercepted redirect URL (http://localhost:1455/auth/callback?code=…&state=…), whole" }),
}, { additionalProperties: false });

/** Our job status in the doc's run status words (pending, running, complete, failed). */
export function runStatus(status: string): "pending" | "running" | "complete" | "failed" {
  if (status === "pending") return "pending";
  if (status === "processing" || status === "awaiting_approval") return "running";
  if (status === "completed") return "complete";
  return "failed";
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
const json = (s: string | null): unknown => (s === null ? null : JSON.parse(s));
const errorText = (s: string | null): string | null => {
  const e = json(s) as { message?: string } | null;
  return e ? (e.message ?? "The agent failed") : null;
};

/** `GET /runs/{job_id}`: its status, and the result once complete or the error once failed. */
export function runView(job: JobRow) {
  const status = runStatus(job.status);
  return {
    job_id: job.id, status,
    result: status === "complete" ? json(job.result) : null,
    result_text: status === "complete" ? job.content : null,
    error: status === "failed" ? (errorText(job.error) ?? `The run was ${job.status}`) : null,
    created_at: iso(job.created_at), completed_at: iso(job.completed_at),
  };
}

/** `GET /conversations/{conv_id}/poll/{pending_id}`: pending until the turn ends (waiting for approval too), then its reply or error. */
export function pollView(job: JobRow) {
  const status = runStatus(job.status);
  if (status === "complete") return { status, result_text: job.content ?? "", structured_result: json(job.result) };
  if (status === "failed") return { status, error: errorText(job.error) ?? `The turn was ${job.status}` };
  // The doc's poll shows only "pending" before the reply (its client loops until complete or failed).
  return { status: "pending" as const };
}

/**
 * A conversation's status (the doc's table): `processing` while a turn is in flight or queued, else
 * what the last turn ended as (`complete` or `failed`), `idle` before the first message.
 */
export function conversationStatus(row: SessionRow, lastJob: JobRow | null): "idle" | "processing" | "complete" | "failed" {
  if ((JSON.parse(row.turns) as string[]).length) return "processing";
  if (!lastJob) return "idle";
  const s = runStatus(lastJob.status);
  return s === "complete" || s === "failed" ? s : "processing";
}

export const workflowOf = (row: SessionRow): string | null => {
  const w = (JSON.parse(row.metadata) as { workflow?: unknown }).workflow;
  return typeof w === "string" ? w : null;
};

export function conversationSummary(row: SessionRow, lastJob: JobRow | null) {
  return {
    conv_id: row.id, user_id: row.user_id, workflow: workflowOf(row), status: conversationStatus(row, lastJob),
    created_at: iso(row.created_at)!, updated_at: iso(row.last_activity_at)!,
  };
}

export function conversationView(row: SessionRow, lastJob: JobRow | null, messages: MessageRow[]) {
  return {
    ...conversationSummary(row, lastJob),
    messages: messages.map((m) => ({ role: m.role, content: m.content, created_at: iso(m.created_at)! })),
  };
}

export interface MushuErrorDetail {
  error: string;
  message: string;
  param?: string;
  active_pending_id?: string;
  /** Ours, beside the doc's fields: the id an operator finds the request's log lines by. */
  request_id?: string;
}

/** One entry of FastAPI's validation answer (`HTTPValidationError.detail`): where, what, and a kind. */
export interface FastApiValidationItem {
  loc: string[];
  msg: string;
  type: string;
}

/** Our request locations in FastAPI's words (`loc[0]`). */
const LOCATIONS: Record<string, string> = { body: "body", query: "query", params: "path", headers: "header" };

/**
 * Our error in the doc's envelope: FastAPI's `{"detail": …}`, with the doc's object form
 * `{"error": <code>, …}` (as its 409 shows). A busy conversation is the doc's `conversation_busy` with
 * `active_pending_id`. A request its schema refuses (or a body that is not JSON) is what FastAPI answers
 * and Mushu's generated SDK parses as `HTTPValidationError`: 422 with a list of `{loc, msg, type}`.
 * Everything else keeps our status and code, naming the field in `param`.
 */
export function mushuEnvelope(status: number, body: ErrorBody): { status: number; body: { detail: MushuErrorDetail | FastApiValidationItem[] } } {
  const e = body.error;
  const param = paramOf(body);
  const location = e.code === "invalid_json" ? "body" : e.details?.location;
  if (status === 400 && typeof location === "string") {
    const listed = Array.isArray(e.details?.errors) ? (e.details.errors as Array<{ param: string; message: string }>) : [];
    // One entry per field, as FastAPI lists them (the validator may word one problem twice).
    const items = (listed.length ? listed : [{ param: param ?? location, message: e.message }]).filter((i, n, all) => all.findIndex((j) => j.param === i.param) === n);
    const where = LOCATIONS[location] ?? location;
    return {
      status: 422,
      body: {
        detail: items.map((i) => ({
          loc: [where, ...(i.param && i.param !== location ? i.param.split(".") : [])],
          msg: i.message,
          type: e.code === "invalid_json" ? "json_invalid" : e.code === "invalid_request" ? "value_error" : e.code,
        })),
      },
    };
  }
  const detail: MushuErrorDetail = { error: e.code, message: e.message, ...(param ? { param } : {}), ...(e.request_id ? { request_id: e.request_id } : {}) };
  if (e.code === "session_busy") {
    const active = e.details?.active_job_id;
    return { status: 409, body: { detail: { ...detail, error: "conversation_busy", ...(typeof active === "string" ? { active_pending_id: active } : {}) } } };
  }
  if (e.code === "session_not_found") return { status: 404, body: { detail: { ...detail, error: "conversation_not_found", message: "Conversation not found" } } };
  return { status, body: { detail } };
}

/**
 * Every error under the Mushu prefix, the handlers' included (they throw our typed errors): the key,
 * rate limits, a body that is not JSON or not valid, a busy or unknown conversation.
 */
export const mushuErrorDialect: ErrorDialect = {
  prefix: MUSHU_PREFIX,
  render: (status, body) => mushuEnvelope(status, body).body,
  statusOf: (status, body) => mushuEnvelope(status, body).status,
};
