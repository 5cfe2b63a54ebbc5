/**
 * The Mosoo API's wire format (seed 001), as pure translations: request bodies, the Thread / Run /
 * file objects, the public event log, and the error envelope. Nothing here does I/O; the routes
 * (index.ts) call our services and hand what they read to these functions.
 */
import { t } from "elysia";
import type { RecordedEvent } from "../../eventstore/port.ts";
import { sessionEvents } from "../../domain/session/events.ts";
import { occurredAt } from "../../core/eventContract.ts";
import type { ErrorBody, ErrorDialect } from "../../http/errors.ts";
import type { SessionRow } from "../../../projections/sessions/index.ts";
import type { JobRow } from "../../../projections/jobs/index.ts";
import type { FileRow } from "../../../projections/files/index.ts";

/** Where the surface is mounted: Mosoo's `https://mosoo.ai/api/v1/…` is `/compat/mosoo/api/v1/…`. */
export const MOSOO_PREFIX = "/compat/mosoo";

/** `input` of create-thread: `{"type": "user.message", "content": [{"type": "text", "text": …}]}`. */
export const MosooInput = t.Object({
  type: t.Literal("user.message"),
  content: t.Array(t.Object({ type: t.Literal("text"), text: t.String({ minLength: 1, maxLength: 100_000 }) }), { minItems: 1, maxItems: 50 }),
});

export const CreateThreadBody = t.Object({
  input: MosooInput,
  client_external_ref: t.Optional(t.String({ minLength: 1, maxLength: 255 })),
  attributed_user_id: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
  files: t.Optional(t.Array(t.Object({ file_id: t.String({ minLength: 1, maxLength: 100 }) }), { maxItems: 20 })),
});
export type CreateThread = typeof CreateThreadBody.static;

/** One event sent to a Thread: a user message, a permission decision, or an interrupt. */
export const SentEvent = t.Union([
  t.Object({ type: t.Literal("user_message"), text: t.String({ minLength: 1, maxLength: 100_000 }), client_request_id: t.Optional(t.String({ maxLength: 200 })) }),
  t.Object({
    type: t.Literal("permission_decision"), decision: t.Union([t.Literal("allow"), t.Literal("deny")]),
    run_id: t.Optional(t.String({ maxLength: 100 })), reason: t.Optional(t.String({ maxLength: 2000 })), client_request_id: t.Optional(t.String({ maxLength: 200 })),
  }),
  t.Object({ type: t.Literal("user_interrupt"), reason: t.Optional(t.String({ maxLength: 2000 })), client_request_id: t.Optional(t.String({ maxLength: 200 })) }),
]);
export type MosooSentEvent = typeof SentEvent.static;
export const SendEventsBody = t.Object({ events: t.Array(SentEvent, { minItems: 1, maxItems: 20 }) });

export const AddFileBody = t.Object({
  contentBase64: t.String({ minLength: 1, maxLength: 13_981_272 }),
  contentType: t.String({ minLength: 1, maxLength: 255 }),
  name: t.String({ minLength: 1, maxLength: 255 }),
});

/** The text of a `user.message` input: its text parts, in order. */
export const inputText = (input: CreateThread["input"]): string => input.content.map((c) => c.text).join("\n\n");

const iso = (ms: number | null | undefined): string | null => (ms === null || ms === undefined ? null : new Date(ms).toISOString());

/** A run's status in Mosoo's words: a job's status, with `awaiting_approval` read as waiting for a permission decision. */
export function runStatus(status: string): string {
  switch (status) {
    case "pending": return "queued";
    case "processing": return "running";
    case "awaiting_approval": return "waiting_for_permission";
    default: return status; // completed, failed, cancelled
  }
}

/** A Run: one turn (job) of the Thread. */
export function runView(job: JobRow | null, fallback?: { id: string; at: number }) {
  if (!job) {
    const at = iso(fallback?.at ?? Date.now());
    return { id: fallback?.id ?? "", status: "queued", createdAt: at, startedAt: null, completedAt: null, updatedAt: at };
  }
  return {
    id: job.id, status: runStatus(job.status), createdAt: iso(job.created_at), startedAt: iso(job.started_at), completedAt: iso(job.completed_at),
    updatedAt: iso(job.updated_at),
  };
}

/** A Thread: a session of ours (its id is the session id, so `/v1` reads it as it is). */
export function threadView(row: SessionRow, lastRunId: string | null) {
  // A Thread started without attributed_user_id belongs to the key's own user (`mosoo-<key id>`).
  const attributed = row.user_id.startsWith("mosoo-") ? null : row.user_id;
  return {
    id: row.id, agent_id: row.agent_id, title: row.name, client_external_ref: row.external_ref,
    created_by: { id: row.user_id }, attributed_user: attributed ? { id: attributed } : null,
    last_run_id: lastRunId, source: "api", archived: row.archived === 1,
    created_at: iso(row.created_at)!, updated_at: iso(row.updated_at)!,
  };
}

/** A Thread file: an API-added attachment, or an artifact the agent produced. */
export const fileView = (f: FileRow) => ({
  id: f.id, name: f.name, mimeType: f.content_type, size: f.size, kind: f.role, committed: f.status === "uploaded", createdAt: iso(f.created_at)!,
});

export interface MosooEvent {
  id: string; type: string; status: string; content: string | null; occurredAt: string; durationMs: number | null; tokens: number | null;
}

/**
 * The public event log of a Thread from its session's own events: the user's messages, each run's
 * start and end, the agent's reply, files and assets, and lifecycle changes. An event's id is its
 * cursor id in the session stream (the `id` of `/v1/sessions/{id}/events`), so both surfaces name it alike.
 * `jobs` gives each run's duration and token count.
 */
export function threadEvents(raw: RecordedEvent, jobs: (id: string) => JobRow | null): MosooEvent[] {
  const e = sessionEvents.decode(raw);
  const base = { occurredAt: iso(occurredAt(raw))!, durationMs: null as number | null, tokens: null as number | null };
  const id = String(Number(raw.revision) + 1);
  switch (e.type) {
    case "MessageSent":
      return [
        { id: `${id}`, type: "user.message", status: "completed", content: e.data.content, ...base },
        { id: `${id}.run`, type: "run.created", status: e.data.queued ? "queued" : "running", content: e.data.job_id, ...base },
      ];
    case "TurnEnded": {
      const job = jobs(e.data.job_id);
      const durationMs = job?.started_at && job.completed_at ? job.completed_at - job.started_at : null;
      const tokens = job ? job.prompt_tokens + job.completion_tokens : null;
      const out: MosooEvent[] = [];
      if (e.data.reply) out.push({ id: `${id}.message`, type: "agent.message", status: "completed", content: e.data.reply.content, ...base, tokens });
      out.push({
        id: `${id}`, type: `run.${e.data.outcome}`, status: e.data.outcome, content: e.data.outcome === "failed" ? (e.data.error?.message ?? e.data.job_id) : e.data.job_id,
        ...base, durationMs, tokens,
      });
      return out;
    }
    case "AssetRegistered":
      return [{ id: `${id}`, type: "file.created", status: "completed", content: e.data.file_id ?? e.data.url, ...base }];
    case "SessionArchived":
      return [{ id: `${id}`, type: "thread.archived", status: "completed", content: null, ...base }];
    case "SessionUnarchived":
      return [{ id: `${id}`, type: "thread.unarchived", status: "completed", content: null, ...base }];
    case "SessionStarted":
      return [{ id: `${id}`, type: "thread.created", status: "completed", content: e.data.external_ref, ...base }];
    default:
      return [];
  }
}

/** A run waiting on a permission decision, as the log shows it until the decision is sent. */
export function permissionRequested(job: JobRow): MosooEvent {
  return {
    id: `${job.id}.permission`, type: "permission.requested", status: "pending", content: job.approval ?? job.id,
    occurredAt: iso(job.updated_at)!, durationMs: null, tokens: null,
  };
}

/** The error envelope: `{"error": {"code", "message", "request_id"}}`, with our status and code. */
export function mosooErrorBody(body: ErrorBody) {
  const e = body.error;
  return { error: { code: e.code, message: e.message, ...(e.request_id ? { request_id: e.request_id } : {}) } };
}

/** Errors under the Mosoo prefix (the key, rate limits, bad bodies, refusals) in the surface's envelope. */
export const mosooErrorDialect: ErrorDialect = {
  prefix: MOSOO_PREFIX,
  render: (_status: number, body: ErrorBody) => mosooErrorBody(body),
};
