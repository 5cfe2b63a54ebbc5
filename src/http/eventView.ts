/**
 * How stream events look to API clients: `{id, type, payload, created_at}`, where `id` is the event's
 * position in its stream counted from 1 (so `since=0` is the beginning and the last id seen is the
 * cursor), and `type` a stable public name.
 */
import { StreamNotFoundError } from "../eventstore/errors.ts";
import type { EventStore, RecordedEvent } from "../eventstore/port.ts";

export const PUBLIC_TYPES: Record<string, string> = {
  JobQueued: "job.queued",
  JobStarted: "job.started",
  TextEmitted: "text",
  ThinkingEmitted: "thinking",
  ToolCalled: "tool.called",
  ToolCompleted: "tool.completed",
  PlanProposed: "plan.proposed",
  PlanApproved: "plan.approved",
  PlanRejected: "plan.rejected",
  CancelRequested: "job.cancel_requested",
  JobCancelled: "job.cancelled",
  JobCompleted: "job.completed",
  JobFailed: "job.failed",
  UsageRecorded: "usage",
  SessionStarted: "session.started",
  SessionRenamed: "session.renamed",
  SessionArchived: "session.archived",
  SessionUnarchived: "session.unarchived",
  SessionDeleted: "session.deleted",
  MessageSent: "message.sent",
  TurnEnded: "turn.ended",
  AssetRegistered: "asset.registered",
};

export type Verbosity = "minimal" | "standard" | "full";

/** minimal: text and lifecycle; standard: plus tool and plan activity; full: everything. */
const MINIMAL = new Set([
  "JobQueued", "JobStarted", "TextEmitted", "JobCancelled", "JobCompleted", "JobFailed",
  "SessionStarted", "MessageSent", "TurnEnded", "SessionDeleted",
]);
const STANDARD = new Set([...MINIMAL, "ToolCalled", "ToolCompleted", "PlanProposed", "PlanApproved", "PlanRejected", "AssetRegistered", "CancelRequested"]);

export const shownAt = (verbosity: Verbosity, type: string): boolean =>
  verbosity === "full" ? true : verbosity === "standard" ? STANDARD.has(type) : MINIMAL.has(type);

export const TERMINAL_EVENTS = new Set(["JobCompleted", "JobFailed", "JobCancelled"]);

export interface PublicEvent {
  id: number;
  type: string;
  payload: unknown;
  created_at: string;
}

export const toPublicEvent = (e: RecordedEvent): PublicEvent => ({
  id: Number(e.revision) + 1,
  type: PUBLIC_TYPES[e.type] ?? e.type,
  payload: e.data,
  created_at: e.created.toISOString(),
});

/** Events of `stream` with id > `since` (revision >= since), up to `limit`; [] for a missing stream. */
export async function eventsAfter(store: EventStore, stream: string, since: number, limit: number): Promise<RecordedEvent[]> {
  const out: RecordedEvent[] = [];
  try {
    for await (const e of store.readStream(stream, { fromRevision: BigInt(since), maxCount: limit })) out.push(e);
  } catch (err) {
    if (!(err instanceof StreamNotFoundError)) throw err;
  }
  return out;
}
