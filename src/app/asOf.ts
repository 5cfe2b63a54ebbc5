/**
 * As-of replay: a session as it stood at a past point, rebuilt by folding its streams (the session's
 * and its jobs', merged in commit order) up to that point — never from a read model.
 *
 * The fold is the projections' own pure row functions (sessions, messages, assets, jobs) applied in
 * memory to the events in `$all` order, which is the order the live projections applied them in; the
 * routes render the rows with the live routes' views. So a past answer has, by construction, the shape
 * and the values the live API gave when the read models stood at that event.
 */
import { assetRowOf, type AssetRow } from "../../projections/assets/index.ts";
import { jobRows, jobsProjection, type JobRow } from "../../projections/jobs/index.ts";
import { messageRowOf, type MessageRow } from "../../projections/messages/index.ts";
import { evolveSessionRow, sessionsProjection, type SessionRow } from "../../projections/sessions/index.ts";
import { occurredAt } from "../core/eventContract.ts";
import { ValidationError } from "../core/errors.ts";
import { sessionStream } from "../domain/streams.ts";
import type { EventStore, RecordedEvent } from "../eventstore/port.ts";
import { mergedHistory, positionOf, sessionStreams } from "./audit.ts";

/** Where to stop: after the event at a position, or after the events that occurred by a time. */
export type AsOfPoint = { position: bigint } | { time: number } | { latest: true };

/** What one turn's attempt ran with (its JobStarted). */
export interface PromptRecord {
  job_id: string;
  attempt: number;
  agent_version: number | null;
  system_prompt_sha256: string | null;
  prompt_overridden: boolean | null;
  started_at: number;
}

export interface SessionAsOf {
  session: SessionRow | null;
  /** History rows, oldest first. */
  messages: MessageRow[];
  /** Asset rows by label number, oldest first. */
  assets: AssetRow[];
  /** Job rows, newest first (as a session's jobs are listed). */
  jobs: JobRow[];
  prompts: PromptRecord[];
  /** The last event folded, or null when none was. */
  last: RecordedEvent | null;
}

const SESSION_TYPES = new Set(sessionsProjection.eventTypes);
const JOB_TYPES = new Set(jobsProjection.eventTypes);

/**
 * Parses `at`: a position (the decimal `position` of an audit event), a `next_cursor` of the session's
 * audit history, or an ISO 8601 date-time with a zone; absent, the latest state.
 */
export function asOfPoint(at: string | undefined): AsOfPoint {
  if (at === undefined) return { latest: true };
  if (/^\d{1,30}$/.test(at)) return { position: positionOf(at, "at") };
  const iso = /^(\d{4})-(\d{2})-(\d{2})T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/.exec(at);
  if (iso) {
    const time = Date.parse(at);
    const [year, month, day] = [Number(iso[1]), Number(iso[2]), Number(iso[3])];
    const date = new Date(Date.UTC(year, month - 1, day));
    const calendar = date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
    if (Number.isFinite(time) && calendar) return { time };
  }
  try {
    const cursor = JSON.parse(Buffer.from(at, "base64url").toString("utf8")) as { p?: unknown };
    if (typeof cursor?.p === "string" && /^\d{1,30}$/.test(cursor.p)) return { position: BigInt(cursor.p) };
  } catch {
    // not a cursor: refused below
  }
  throw new ValidationError("at must be an event position, a cursor of the session's audit history, or an ISO 8601 date-time with a zone", { param: "at" });
}

/**
 * Folds the session's merged history up to `point`: through the event at that position (events after
 * it are not read), or through the events that occurred by that time — the commit-ordered prefix
 * ending before the first event that occurred later.
 */
export async function sessionAsOf(store: EventStore, appId: string, sessionId: string, point: AsOfPoint): Promise<SessionAsOf> {
  const streams = await sessionStreams(store, appId, sessionId);
  const own = sessionStream(sessionId);
  let session: SessionRow | null = null;
  const messages: MessageRow[] = [];
  const assets = new Map<number, AssetRow>();
  const jobs = new Map<string, JobRow | null>();
  const prompts: PromptRecord[] = [];
  let last: RecordedEvent | null = null;
  const events = mergedHistory(store, appId, streams, null);
  try {
    for await (const e of events) {
      if ("position" in point && e.position > point.position) break;
      if ("time" in point && occurredAt(e) > point.time) break;
      last = e;
      if (SESSION_TYPES.has(e.type)) session = evolveSessionRow(session, e);
      if (e.streamId === own) {
        const message = messageRowOf(e);
        if (message) messages.push(message);
        const asset = assetRowOf(e);
        if (asset) assets.set(asset.n, asset);
        continue;
      }
      const jobId = e.streamId.slice(e.streamId.indexOf("-") + 1);
      if (JOB_TYPES.has(e.type)) jobs.set(jobId, jobRows.evolve(jobs.get(jobId) ?? null, e));
      if (e.type === "JobStarted") {
        const d = e.data as { attempt: number; agent_version?: number; system_prompt_sha256?: string; prompt_overridden?: boolean };
        prompts.push({
          job_id: jobId, attempt: d.attempt, agent_version: d.agent_version ?? null, system_prompt_sha256: d.system_prompt_sha256 ?? null,
          prompt_overridden: d.prompt_overridden ?? null, started_at: occurredAt(e),
        });
      }
    }
  } finally {
    await events.return(undefined);
  }
  const jobList = [...jobs.values()].filter((j): j is JobRow => j !== null).sort((a, b) => b.seq - a.seq);
  return { session, messages, assets: [...assets.values()].sort((a, b) => a.n - b.n), jobs: jobList, prompts, last };
}
