/**
 * How stream events look to API clients: `{id, type, payload, created_at}`, where `id` is the event's
 * position in its stream counted from 1 (so `since=0` is the beginning and the last id seen is the
 * cursor), `type` a stable public name, and `payload` the event's public payload.
 *
 * The public view is its own contract, mapped here from the internal events (decoded through their
 * contract, so older versions arrive upcast): internal fields stay out (a job's `runner_id` names a
 * server process), and internals can change without changing what clients see. Its schema, per
 * type, is PUBLIC_EVENT_SCHEMA, listed in the OpenAPI document.
 */
import { Type, type TSchema } from "@sinclair/typebox";
import { occurredAt } from "../core/eventContract.ts";
import { domainEvents, DOMAIN_EVENTS, type AnyDomainEvent } from "../domain/catalog.ts";
import { JOB_EVENTS, ToolAssetSchema } from "../domain/job/events.ts";
import { StreamNotFoundError } from "../eventstore/errors.ts";
import type { EventStore, RecordedEvent } from "../eventstore/port.ts";
import type { StreamTails } from "../app/streamTails.ts";

export const PUBLIC_TYPES: Record<string, string> = {
  JobQueued: "job.queued",
  JobStarted: "job.started",
  TextEmitted: "text",
  ThinkingEmitted: "thinking",
  ToolCalled: "tool.called",
  ToolCompleted: "tool.completed",
  ToolProgressed: "tool.progress",
  InfoEmitted: "info",
  CanvasOpEmitted: "canvas_op",
  PlanProposed: "plan.proposed",
  PlanApproved: "plan.approved",
  PlanRejected: "plan.rejected",
  CancelRequested: "job.cancel_requested",
  JobReleased: "job.released",
  JobCancelled: "job.cancelled",
  JobCompleted: "job.completed",
  JobFailed: "job.failed",
  UsageRecorded: "usage",
  ContextPrepared: "context.prepared",
  SessionStarted: "session.started",
  SessionRenamed: "session.renamed",
  SessionArchived: "session.archived",
  SessionUnarchived: "session.unarchived",
  SessionDeleted: "session.deleted",
  MessageSent: "message.sent",
  TurnEnded: "turn.ended",
  AssetRegistered: "asset.registered",
  HistorySummarized: "history.summarized",
  ClientHistorySaved: "history.client_saved",
};

export type Verbosity = "minimal" | "standard" | "full";

/**
 * minimal: text and lifecycle, and tools' `info` lines (status for the user, like text); standard: plus
 * tool and plan activity, `canvas_op` among it; full: everything (`tool.progress` too, as in Magus).
 */
const MINIMAL = new Set([
  // job.released is lifecycle, and says which step's text a reader drops (it is streamed again).
  "JobQueued", "JobStarted", "TextEmitted", "JobReleased", "JobCancelled", "JobCompleted", "JobFailed",
  "SessionStarted", "MessageSent", "TurnEnded", "SessionDeleted", "InfoEmitted",
]);
const STANDARD = new Set([...MINIMAL, "ToolCalled", "ToolCompleted", "PlanProposed", "PlanApproved", "PlanRejected", "AssetRegistered", "CancelRequested", "CanvasOpEmitted",
  // What of a long history the model was shown, and the summaries made of it.
  "ContextPrepared", "HistorySummarized"]);

export const shownAt = (verbosity: Verbosity, type: string): boolean =>
  verbosity === "full" ? true : verbosity === "standard" ? STANDARD.has(type) : MINIMAL.has(type);

export const TERMINAL_EVENTS = new Set(["JobCompleted", "JobFailed", "JobCancelled"]);

export interface PublicEvent {
  id: number;
  type: string;
  payload: unknown;
  created_at: string;
}

/** What clients see of an event's data: the internal data, less what is the server's business. */
function publicPayload(event: AnyDomainEvent): unknown {
  switch (event.type) {
    case "JobStarted": {
      // Which agent version and prompt the attempt ran with are the auditor's; the runner is the operator's.
      const { runner_id: _, ...shown } = event.data;
      return shown;
    }
    case "JobQueued": {
      // The usage-limit pools a job holds (they name its key and user) are the operator's.
      const { budgets: _, ...shown } = event.data;
      return shown;
    }
    case "JobReleased": {
      // The calls a resume must finish are the runner's business; clients saw them as tool.called.
      const { tool_calls: _, ...shown } = event.data;
      return shown;
    }
    case "ToolCompleted": {
      // `assets` is always a list: events written before tools could return several had `asset` alone.
      const d = event.data;
      const old = d.asset as { asset_label?: string; kind?: string; url?: string | null; prompt?: string | null } | null;
      const assets = d.assets ?? (old ? [{ asset_label: old.asset_label ?? null, kind: old.kind ?? "file", url: old.url ?? null, file_id: null, prompt: old.prompt ?? null }] : []);
      return { ...d, assets };
    }
    default:
      return event.data;
  }
}

/** Public payload schemas per internal type: the internal schema, less the fields publicPayload drops. */
const PAYLOAD_SCHEMAS: Record<string, TSchema> = {
  ...Object.fromEntries(Object.entries(DOMAIN_EVENTS).map(([type, def]) => [type, def.schema])),
  JobQueued: Type.Omit(JOB_EVENTS.JobQueued.schema, ["budgets"]),
  JobReleased: Type.Omit(JOB_EVENTS.JobReleased.schema, ["tool_calls"]),
  ToolCompleted: Type.Object({
    ...Type.Omit(JOB_EVENTS.ToolCompleted.schema, ["assets"]).properties,
    assets: Type.Array(ToolAssetSchema, { description: "Every asset the call registered, with its session label (null in a run)" }),
  }),
  JobStarted: Type.Object({
    attempt: Type.Integer({ minimum: 1 }),
    agent_version: Type.Optional(Type.Integer({ minimum: 0, description: "The agent stream's revision the attempt loaded" })),
    system_prompt_sha256: Type.Optional(Type.String({ description: "SHA-256 (hex) of the agent's system prompt the attempt ran with" })),
    prompt_overridden: Type.Optional(Type.Boolean({ description: "Whether that prompt was the app's override (PUT /v1/agents/{agent_id}/prompt)" })),
  }),
};

/** The public event, one variant per public type: what `/events` and SSE `data:` lines carry. */
export const PUBLIC_EVENT_SCHEMA = Type.Unsafe<PublicEvent>(Type.Union(Object.entries(PUBLIC_TYPES).map(([internal, type]) => Type.Object({
  id: Type.Integer({ minimum: 1, description: "Position in the stream, counted from 1: the cursor" }),
  type: Type.Literal(type),
  payload: PAYLOAD_SCHEMAS[internal]!,
  created_at: Type.String({ description: "When it happened (ISO 8601)" }),
}, { title: type }))));

/** Public views of events held in memory (the stream tails), built once per event. */
const views = new WeakMap<RecordedEvent, PublicEvent>();

export function toPublicEvent(e: RecordedEvent): PublicEvent {
  let view = views.get(e);
  if (!view) {
    view = {
      id: Number(e.revision) + 1,
      type: PUBLIC_TYPES[e.type] ?? e.type,
      payload: publicPayload(domainEvents.decode(e)),
      created_at: new Date(occurredAt(e)).toISOString(),
    };
    views.set(e, view);
  }
  return view;
}

/**
 * The public view as JSON, serialized once per event held in memory: a poll or an SSE fan-out to many
 * clients sends the same bytes without building them again.
 */
const serialized = new WeakMap<RecordedEvent, string>();

export function publicEventJson(e: RecordedEvent): string {
  let json = serialized.get(e);
  if (json === undefined) {
    json = JSON.stringify(toPublicEvent(e));
    serialized.set(e, json);
  }
  return json;
}

/**
 * Events of `stream` with id > `since` (revision >= since), up to `limit`; [] for a missing stream.
 * From the stream's live tail in memory when `tails` holds them, else from the store.
 */
export async function eventsAfter(store: EventStore, stream: string, since: number, limit: number, tails?: StreamTails): Promise<RecordedEvent[]> {
  const cached = tails?.read(stream, BigInt(since), limit);
  if (cached) return cached;
  const out: RecordedEvent[] = [];
  try {
    for await (const e of store.readStream(stream, { fromRevision: BigInt(since), maxCount: limit })) out.push(e);
  } catch (err) {
    if (!(err instanceof StreamNotFoundError)) throw err;
  }
  // A read that reached the stream's end (fewer than asked) is its tail: keep it for the next reads.
  if (out.length > 0 && out.length < limit) tails?.warm(stream, out);
  return out;
}
