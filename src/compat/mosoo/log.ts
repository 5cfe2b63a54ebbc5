/**
 * A Thread's public event log as the Mosoo surface reads it from the store (the pure parts are in
 * wire.ts). Every answer is the log as it stood at one store position, `head`: session events and the
 * runs' tool steps and permission requests alike up to it, none after. Each run event is placed by
 * position among the session's, so one recorded later can only come after everything an answer shows,
 * and a poller `after` its last event sees it next time, once.
 *
 * A poll reads what its page needs, not the rest of the Thread: the session events from `after` on (a
 * few more than `limit`), and the steps of only those runs that can have steps among them, each run's
 * stream only as far as the page reaches.
 */
import type { AppContext } from "../../app/context.ts";
import { ValidationError } from "../../core/errors.ts";
import { jobStream, sessionStream } from "../../domain/streams.ts";
import { StreamDeletedError, StreamNotFoundError } from "../../eventstore/errors.ts";
import type { RecordedEvent } from "../../eventstore/port.ts";
import { getJob, type JobRow } from "../../../projections/jobs/index.ts";
import type { SessionRow } from "../../../projections/sessions/index.ts";
import {
  cursorOfEventId, eventsAfter, logWithExtras, openTurns, placedInLog, runExtras, runOfEntry, runsInFlight, threadEvents, turnChangeOf, visible,
  type LogEntry, type LogExtra, type MosooEvent, type TurnChange,
} from "./wire.ts";

/** Session events read back per store call while looking for the turns open at a poll's start. */
const TURNS_CHUNK = 100;

/**
 * A run's events the log places, as recorded up to `head`, read from its stream's start (a tool's end
 * needs its call's time) to `until`, and past it only while a permission request read is undecided:
 * whether it was decided by `head` says whether it is shown. A run whose stream does not exist yet (its
 * message recorded, its job not yet queued) has none so far.
 */
async function runLogEvents(ctx: AppContext, runId: string, until: bigint, head: bigint): Promise<RecordedEvent[]> {
  const raws: RecordedEvent[] = [];
  let waiting = false;
  try {
    for await (const raw of ctx.store.readStream(jobStream(runId))) {
      if (raw.position > head || (raw.position > until && !waiting)) break;
      if (!placedInLog(raw.type)) continue;
      raws.push(raw);
      // As runExtras reads them: a plan opens a request; a tool step leaves it open; anything else (a decision, the run's end) answers it.
      if (raw.type === "PlanProposed") waiting = true;
      else if (raw.type !== "ToolCalled" && raw.type !== "ToolCompleted") waiting = false;
    }
  } catch (err) {
    if (!(err instanceof StreamNotFoundError || err instanceof StreamDeletedError)) throw err;
  }
  return raws;
}

/** The tool steps and permission requests of the runs `runIds`, placed up to `until` (see runLogEvents). */
async function logExtras(ctx: AppContext, runIds: Iterable<string>, until: bigint, head: bigint): Promise<LogExtra[]> {
  const extras: LogExtra[] = [];
  for (const runId of new Set(runIds)) extras.push(...runExtras(await runLogEvents(ctx, runId, until, head)));
  return extras;
}

/**
 * The turns open at the session event at `revision`, oldest first: its turn changes read back from it,
 * as far as the last message recorded while no turn was open (so not the whole Thread).
 */
async function openTurnsAt(ctx: AppContext, sessionId: string, revision: bigint): Promise<string[]> {
  const changes: TurnChange[] = [];
  for (let next = revision; next >= 0n; next -= BigInt(TURNS_CHUNK)) {
    let read = 0;
    for await (const raw of ctx.store.readStream(sessionStream(sessionId), { direction: "backwards", fromRevision: next, maxCount: TURNS_CHUNK })) {
      read++;
      const change = turnChangeOf(raw);
      if (!change) continue;
      changes.push(change);
      if ("sent" in change && !change.queued) return openTurns(changes).turns;
    }
    if (read < TURNS_CHUNK) break;
  }
  return openTurns(changes).turns;
}

/** Each run's duration and tokens for the log, read once per answer. */
function jobReader(ctx: AppContext): (id: string) => JobRow | null {
  const jobs = new Map<string, JobRow | null>();
  return (id) => {
    if (!jobs.has(id)) jobs.set(id, getJob(ctx.db, ctx.appId, id));
    return jobs.get(id)!;
  };
}

const entryOf = (raw: RecordedEvent, jobOf: (id: string) => JobRow | null): LogEntry =>
  ({ revision: Number(raw.revision), position: raw.position, events: threadEvents(raw, jobOf) });

export interface LogPage {
  events: MosooEvent[];
  truncated: boolean;
  has_more: boolean;
  next_after: string;
}

/** The doc's read: the latest `limit` events, oldest first; `truncated` says older ones were left out. */
export async function latestLog(ctx: AppContext, row: SessionRow, limit: number): Promise<LogPage> {
  const head = await ctx.store.headPosition();
  const jobOf = jobReader(ctx);
  const entries: LogEntry[] = [];
  const runIds = new Set<string>();
  if (head !== null) {
    for await (const raw of ctx.store.readStream(sessionStream(row.id))) {
      if (raw.position > head) break;
      entries.push(entryOf(raw, jobOf));
      const run = runOfEntry(raw);
      if (run) runIds.add(run);
    }
  }
  const all = visible(logWithExtras(entries, head === null ? [] : await logExtras(ctx, runIds, head, head), true));
  const events = all.slice(Math.max(0, all.length - limit));
  return { events, truncated: all.length > limit, has_more: false, next_after: events[events.length - 1]?.id ?? "0" };
}

/**
 * A poll: the events after `after` (an event id this log gave, or 0 for its start), oldest first, at
 * most `limit`. An id the log never gave (past its end, a suffix no event has) is 400 `invalid_cursor`:
 * answering it would stall the poller on its own cursor, or skip what follows.
 */
export async function logAfter(ctx: AppContext, row: SessionRow, after: string, limit: number): Promise<LogPage> {
  const invalid = () => new ValidationError("after must be the id of an event of this log (or 0 for its start)", { param: "after" }, "invalid_cursor");
  const from = cursorOfEventId(after);
  if (from === null || (from === 0 && after !== "0")) throw invalid();
  const head = await ctx.store.headPosition();
  const jobOf = jobReader(ctx);
  const raws: RecordedEvent[] = [];
  const entries: LogEntry[] = [];
  let read = 0;
  let complete = true;
  if (head !== null) {
    // From the session event `after` stands at, so the events it produced after `after` are included;
    // a few more than `limit`, whatever its extras add; the rest waits for the next poll.
    for await (const raw of ctx.store.readStream(sessionStream(row.id), { fromRevision: BigInt(Math.max(0, from - 1)) })) {
      if (raw.position > head) break;
      if (read > limit + 3) {
        complete = false;
        break;
      }
      const entry = entryOf(raw, jobOf);
      read += entry.events.length;
      entries.push(entry);
      raws.push(raw);
    }
  }
  const first = entries[0];
  if (!first || (from > 0 && first.revision !== from - 1)) throw invalid();
  // The runs whose steps can lie among the events read: those the events name, and those in flight at
  // any of them (a run sent earlier that runs through the page names no event of it). An incomplete read
  // leaves out what follows its last event, so its steps are read only that far.
  const open = from <= 1 ? [] : await openTurnsAt(ctx, row.id, BigInt(from - 1));
  const changes = raws.slice(1).map(turnChangeOf);
  const inFlight = runsInFlight(open, complete ? changes : changes.slice(0, -1));
  const named = raws.flatMap((raw) => runOfEntry(raw) ?? []);
  const until = complete ? head! : entries[entries.length - 1]!.position;
  const out = logWithExtras(entries, await logExtras(ctx, [...named, ...inFlight], until, head!), complete);
  // Found among the hidden places too: a poller that saw a request since decided resumes right after it.
  const resumed = from === 0 ? out : eventsAfter(out, after, from, first.events.length);
  if (resumed === null) throw invalid();
  const shown = visible(resumed);
  const events = shown.slice(0, limit);
  return { events, truncated: false, has_more: shown.length > limit || !complete, next_after: events[events.length - 1]?.id ?? after };
}
