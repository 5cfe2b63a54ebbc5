/**
 * The Mosoo API's wire format (seed 001), as pure translations: request bodies, the Thread / Run /
 * file objects, the public event log, and the error envelope. Nothing here does I/O; the routes
 * (index.ts) call our services and hand what they read to these functions.
 */
import { t } from "elysia";
import type { RecordedEvent } from "../../eventstore/port.ts";
import { sessionEvents } from "../../domain/session/events.ts";
import { jobEvents } from "../../domain/job/events.ts";
import { occurredAt } from "../../core/eventContract.ts";
import type { ErrorBody, ErrorDialect } from "../../http/errors.ts";
import { ValidationError } from "../../core/errors.ts";
import type { SessionRow } from "../../../projections/sessions/index.ts";
import type { JobRow } from "../../../projections/jobs/index.ts";
import type { FileRow } from "../../../projections/files/index.ts";

/** Where the surface is mounted: Mosoo's `https://mosoo.ai/api/v1/…` is `/compat/mosoo/api/v1/…`. */
export const MOSOO_PREFIX = "/compat/mosoo";

/**
 * One part of a `user.message`'s content. Any `type` passes the schema so that one we cannot take is
 * refused by name (`contentText`: 400 unsupported_content_type), never silently dropped.
 */
const ContentPart = t.Object({
  type: t.String({ minLength: 1, maxLength: 50 }),
  text: t.Optional(t.String({ minLength: 1, maxLength: 100_000 })),
});
const Content = t.Array(ContentPart, { minItems: 1, maxItems: 50 });

/** `input` of create-thread: `{"type": "user.message", "content": [{"type": "text", "text": …}]}`. */
export const MosooInput = t.Object({ type: t.Literal("user.message"), content: Content });

export const CreateThreadBody = t.Object({
  input: MosooInput,
  client_external_ref: t.Optional(t.String({ minLength: 1, maxLength: 255 })),
  attributed_user_id: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
  files: t.Optional(t.Array(t.Object({ file_id: t.String({ minLength: 1, maxLength: 100 }) }), { maxItems: 20 })),
});
export type CreateThread = typeof CreateThreadBody.static;

const ClientRequestId = t.Optional(t.String({ maxLength: 200 }));

/**
 * One event sent to a Thread: a user message (the quickstart's `{"type": "user_message", "text"}`, or the
 * create-thread input's `{"type": "user.message", "content": […]}`), a permission decision, or an interrupt.
 */
export const SentEvent = t.Union([
  t.Object({ type: t.Literal("user_message"), text: t.String({ minLength: 1, maxLength: 100_000 }), client_request_id: ClientRequestId }),
  t.Object({ type: t.Literal("user.message"), content: Content, client_request_id: ClientRequestId }),
  t.Object({
    type: t.Literal("permission_decision"), decision: t.Union([t.Literal("allow"), t.Literal("deny")]),
    run_id: t.Optional(t.String({ maxLength: 100 })), reason: t.Optional(t.String({ maxLength: 2000 })), client_request_id: ClientRequestId,
  }),
  t.Object({ type: t.Literal("user_interrupt"), reason: t.Optional(t.String({ maxLength: 2000 })), client_request_id: ClientRequestId }),
]);
export type MosooSentEvent = typeof SentEvent.static;
/** `{"events": [...]}`, or one message as create-thread's `{"input": {...}}` (exactly one of the two). */
export const SendEventsBody = t.Object({
  events: t.Optional(t.Array(SentEvent, { minItems: 1, maxItems: 20 })),
  input: t.Optional(MosooInput),
});

/** The events of a send-events body: its `events`, or its `input` as one `user.message`; 400 for neither or both. */
export function sentEventsOf(body: typeof SendEventsBody.static): MosooSentEvent[] {
  if ((body.events === undefined) === (body.input === undefined)) {
    throw new ValidationError("Send either `events` (a list) or `input` (one user.message)", { param: "events" });
  }
  return body.events ?? [{ type: "user.message", content: body.input!.content }];
}

export const AddFileBody = t.Object({
  contentBase64: t.String({ minLength: 1, maxLength: 13_981_272 }),
  contentType: t.String({ minLength: 1, maxLength: 255 }),
  name: t.String({ minLength: 1, maxLength: 255 }),
});

/**
 * The text of a `user.message`'s content: its text parts, in order. A part of another type (an image,
 * a file) is refused, 400 unsupported_content_type naming it: a Thread takes text, and files through
 * `files` / `POST /threads/{threadId}/files`.
 */
export function contentText(content: ReadonlyArray<{ type: string; text?: string }>, param = "input.content"): string {
  content.forEach((part, i) => {
    if (part.type !== "text") {
      throw new ValidationError(`Content of type "${part.type}" is not supported: send text parts, and files through files / POST /threads/{threadId}/files`,
        { param: `${param}[${i}].type` }, "unsupported_content_type");
    }
    if (part.text === undefined) throw new ValidationError("A text part needs its text", { param: `${param}[${i}].text` });
  });
  return content.map((c) => c.text!).join("\n\n");
}

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

/** One session event's share of the log: its revision and global position, and the events it gives. */
export interface LogEntry {
  revision: number;
  position: bigint;
  events: MosooEvent[];
}

/** The run a session event is about (a message's run, a turn's end), so its run's steps are read with it. */
export function runOfEntry(raw: RecordedEvent): string | null {
  const e = sessionEvents.decode(raw);
  return e.type === "MessageSent" || e.type === "TurnEnded" ? e.data.job_id : null;
}

/**
 * An event of the log that no session event gives: a run's tool step, or a permission request. It is
 * placed by its global position among the session's events, after the last one recorded before it,
 * with the id `<that one's cursor>.<suffix>`. A hidden one (a permission request since decided) only
 * keeps its place, so a poller that saw it resumes right after it. Positions are the store's, so a read
 * cut at one position shows every event up to it, session or run, and none after it.
 */
export interface LogExtra {
  position: bigint;
  suffix: string;
  event: Omit<MosooEvent, "id">;
  hidden?: boolean;
}

const base = (at: number) => ({ occurredAt: iso(at)!, durationMs: null as number | null, tokens: null as number | null });

/** The run events the log shows or places; the rest of a run's stream (text, usage…) is skipped undecoded. */
const RUN_LOG_TYPES = new Set(["ToolCalled", "ToolCompleted", "PlanProposed", "PlanApproved", "PlanRejected", "JobCancelled", "JobCompleted", "JobFailed"]);
export const placedInLog = (type: string): boolean => RUN_LOG_TYPES.has(type);

/**
 * A run's tool status and permission requests from its own stream (as far as it was read):
 * `tool.started` (status `running`) when the agent calls a tool, `tool.completed` (status `completed`,
 * or `failed` with the error) when it ends, with its duration; `content` is the tool's name. Each plan
 * proposed is a `permission.requested` (`content` the plan) while nothing has decided it, and a hidden
 * place once something has (approved, rejected, or the run ended), for a poller that read it then.
 * Suffixes carry the run stream's cursor (`tool<n>`, `permission<n>`), so every event of a run has an
 * id of its own that stays put.
 */
export function runExtras(raws: readonly RecordedEvent[]): LogExtra[] {
  const out: LogExtra[] = [];
  const calledAt = new Map<string, number>();
  let open: LogExtra | null = null;
  for (const raw of raws) {
    if (!placedInLog(raw.type)) continue;
    const e = jobEvents.decode(raw);
    const at = occurredAt(raw);
    const cursor = Number(raw.revision) + 1;
    switch (e.type) {
      case "ToolCalled":
        calledAt.set(e.data.call_id, at);
        out.push({ position: raw.position, suffix: `tool${cursor}`, event: { type: "tool.started", status: "running", content: e.data.name, ...base(at) } });
        break;
      case "ToolCompleted": {
        const started = calledAt.get(e.data.call_id);
        out.push({
          position: raw.position, suffix: `tool${cursor}`,
          event: { type: "tool.completed", status: e.data.error ? "failed" : "completed", content: e.data.error ? `${e.data.name}: ${e.data.error}` : e.data.name, ...base(at), durationMs: started === undefined ? null : at - started },
        });
        break;
      }
      case "PlanProposed":
        if (open) open.hidden = true;
        // The plan as the job's read model words it (`/v1/jobs/{id}`'s approval).
        open = { position: raw.position, suffix: `permission${cursor}`, event: { type: "permission.requested", status: "pending", content: JSON.stringify({ requested: true, approved: null, plan: e.data }), ...base(at) } };
        out.push(open);
        break;
      default:
        // A decision, or the run's end: the request open until now is answered.
        if (open) open.hidden = true;
        open = null;
        break;
    }
  }
  return out;
}

/** A log event, and whether it only keeps a place (a decided permission request). */
export type PlacedEvent = MosooEvent & { hidden?: boolean };

/**
 * The log of `entries` (consecutive session events, oldest first) with `extras` in their places: each
 * after the last session event recorded before it. So an extra's id stays the same as later events
 * arrive, and a poller `after` it sees only what followed. An extra is left out when its place lies
 * before `entries` (a poll already past it) or, when `complete` is false (the read stopped early), beyond them.
 */
export function logWithExtras(entries: readonly LogEntry[], extras: readonly LogExtra[], complete: boolean): PlacedEvent[] {
  const sorted = [...extras].sort((a, b) => (a.position < b.position ? -1 : a.position > b.position ? 1 : 0));
  const out: PlacedEvent[] = [];
  const place = (x: LogExtra, cursor: number) => out.push({ id: `${cursor}.${x.suffix}`, ...x.event, ...(x.hidden ? { hidden: true } : {}) });
  let j = 0;
  for (const [i, entry] of entries.entries()) {
    for (; j < sorted.length && sorted[j]!.position < entry.position; j++) if (i > 0) place(sorted[j]!, entry.revision);
    out.push(...entry.events);
  }
  const last = entries[entries.length - 1];
  if (complete && last) for (; j < sorted.length; j++) place(sorted[j]!, last.revision + 1);
  return out;
}

/** The events a client is shown: without the places kept for decided requests. */
export const visible = (events: readonly PlacedEvent[]): MosooEvent[] => events.filter((e) => !e.hidden).map(({ hidden: _, ...e }) => e);

/** The session-stream cursor an event id of the log stands at (`12`, `12.run`, `12.message`…); null for anything else. */
export function cursorOfEventId(id: string): number | null {
  const m = /^(\d{1,15})(\.[a-z]+\d{0,15})?$/.exec(id);
  return m ? Number(m[1]) : null;
}

/**
 * The events after `after` in `events`, which start with the `own` events of the session event at
 * `afterCursor` (the first one read, which the caller found in the store). Null when `after` is no id
 * this log gave there, so the caller refuses it rather than answer with a cursor that skips or stalls.
 * Every id the log gives stays in it (a decided request keeps a hidden place), so a given one is found.
 * Two more forms are taken: the bare cursor of a session event that gives no event of its own (a
 * rename: `/v1/sessions/{id}/events` numbers it), which resumes before what followed it; and a request's
 * `<cursor>.permission` from before requests were numbered, which resumes after everything placed at
 * that cursor, as long as a request was placed there.
 */
export function eventsAfter<E extends MosooEvent>(events: readonly E[], after: string, afterCursor: number, own = 0): E[] | null {
  const at = events.findIndex((e) => e.id === after);
  if (at >= 0) return events.slice(at + 1);
  if (after === String(afterCursor)) return events.slice(own);
  const requestAt = new RegExp(`^${afterCursor}\\.permission\\d+$`);
  if (after === `${afterCursor}.permission` && events.some((e) => requestAt.test(e.id))) {
    let skip = 0;
    while (skip < events.length && cursorOfEventId(events[skip]!.id) === afterCursor) skip++;
    return events.slice(skip);
  }
  return null;
}

/** What a session event does to the Thread's turns: a message's run joins them, a turn's end leaves them. */
export type TurnChange = { sent: string; queued: boolean } | { ended: string };

export function turnChangeOf(raw: RecordedEvent): TurnChange | null {
  if (raw.type !== "MessageSent" && raw.type !== "TurnEnded") return null;
  const e = sessionEvents.decode(raw);
  if (e.type === "MessageSent") return { sent: e.data.job_id, queued: e.data.queued };
  if (e.type === "TurnEnded") return { ended: e.data.job_id };
  return null;
}

/**
 * The turns open at a session event, oldest first, from the turn changes read back from it (newest
 * first). A message recorded while no turn was open says so (`queued: false`), so the read stops there:
 * `done` is true once `changes` reached it, and only then is the answer whole.
 */
export function openTurns(changes: Iterable<TurnChange>): { turns: string[]; done: boolean } {
  const ended = new Set<string>();
  const open: string[] = [];
  for (const c of changes) {
    if ("ended" in c) ended.add(c.ended);
    else {
      if (!ended.has(c.sent)) open.push(c.sent);
      if (!c.queued) return { turns: open.reverse(), done: true };
    }
  }
  return { turns: open.reverse(), done: false };
}

/**
 * The runs in flight (the first open turn) at the first of a read's session events and after each of
 * the rest, given the turns open at the first and the changes the rest make. Only the run in flight
 * records tool steps or permission requests (a runner starts a job only when it is its session's first
 * turn, and a job records steps only while it runs), so these are the runs whose steps lie among the
 * events read.
 */
export function runsInFlight(openAtFirst: readonly string[], changes: ReadonlyArray<TurnChange | null>): Set<string> {
  let turns = [...openAtFirst];
  const out = new Set<string>();
  if (turns[0]) out.add(turns[0]);
  for (const c of changes) {
    if (c && "ended" in c) turns = turns.filter((id) => id !== c.ended);
    else if (c) turns.push(c.sent);
    if (turns[0]) out.add(turns[0]);
  }
  return out;
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
