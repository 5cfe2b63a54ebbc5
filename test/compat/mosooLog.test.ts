/**
 * The Mosoo event log's placing of what no session event gives (tool steps, permission requests), as
 * units: each extra goes after the last session event recorded before it, keeps its id as later events
 * arrive, and a poller resumes after it — also after a request since decided, which only keeps its place.
 */
import { expect, test } from "bun:test";
import {
  cursorOfEventId, eventsAfter, logWithExtras, openTurns, runExtras, runsInFlight, visible, type LogEntry, type LogExtra, type MosooEvent,
} from "../../src/compat/mosoo/wire.ts";
import type { RecordedEvent } from "../../src/eventstore/port.ts";

/** eventsAfter for an id the log gave: it must not be refused. */
function after<E extends MosooEvent>(events: readonly E[], id: string, cursor: number): E[] {
  const rest = eventsAfter(events, id, cursor);
  if (rest === null) throw new Error(`${id} was refused`);
  return rest;
}
const ev = (id: string, type: string): MosooEvent => ({ id, type, status: "completed", content: null, occurredAt: "2026-01-01T00:00:00.000Z", durationMs: null, tokens: null });
/** Session event with cursor `c` (revision c-1) at global position `p`. */
const entry = (c: number, p: number, ...types: string[]): LogEntry => ({ revision: c - 1, position: BigInt(p), events: types.map((t, i) => ev(i ? `${c}.run` : `${c}`, t)) });
const extra = (p: number, suffix: string, type: string, hidden = false): LogExtra => ({
  position: BigInt(p), suffix, event: { type, status: "running", content: "t", occurredAt: "2026-01-01T00:00:00.000Z", durationMs: null, tokens: null }, ...(hidden ? { hidden } : {}),
});

test("extras go after the last session event before them, with that event's cursor in their id", () => {
  const entries = [entry(1, 10, "thread.created"), entry(2, 20, "user.message", "run.created"), entry(3, 50, "run.completed")];
  const extras = [extra(35, "tool7", "tool.completed"), extra(30, "tool6", "tool.started"), extra(60, "tool9", "tool.started")];
  const ids = logWithExtras(entries, extras, true).map((e) => e.id);
  expect(ids).toEqual(["1", "2", "2.run", "2.tool6", "2.tool7", "3", "3.tool9"]);
  // A read that stopped early leaves out what lies beyond it; one that starts later, what lies before it.
  expect(logWithExtras(entries, extras, false).map((e) => e.id)).not.toContain("3.tool9");
  expect(logWithExtras(entries.slice(2), extras, true).map((e) => e.id)).toEqual(["3", "3.tool9"]);
});

test("a poller after a request since decided resumes right after its place; the place is never shown", () => {
  const entries = [entry(1, 10, "thread.created"), entry(2, 20, "user.message", "run.created")];
  const extras = [extra(30, "permission", "permission.requested", true), extra(40, "tool8", "tool.started"), extra(45, "tool9", "tool.completed")];
  const placed = logWithExtras(entries, extras, true);
  expect(visible(placed).map((e) => e.id)).toEqual(["1", "2", "2.run", "2.tool8", "2.tool9"]);
  expect(visible(after(placed, "2.permission", 2)).map((e) => e.id)).toEqual(["2.tool8", "2.tool9"]);
  expect(visible(after(placed, "2.tool8", 2)).map((e) => e.id)).toEqual(["2.tool9"]);
  expect(cursorOfEventId("12.tool34")).toBe(12);
  expect(cursorOfEventId("12.permission")).toBe(12);
  expect(cursorOfEventId("12.tool")).toBe(12);
  expect(cursorOfEventId("12.9")).toBeNull();
});

/** A run-stream event (revision `rev`, global position `p`) as the store records it. */
const runEvent = (rev: number, p: number, type: string, data: Record<string, unknown>): RecordedEvent => ({
  id: `e${rev}`, type, streamId: "job-job_1", revision: BigInt(rev), position: BigInt(p), data, metadata: { schema_version: 1 }, created: new Date(Date.UTC(2026, 0, 1)),
});
const plan = (rev: number, p: number, planId: string) =>
  runEvent(rev, p, "PlanProposed", { step: 1, plan_id: planId, title: `Plan ${planId}`, steps: [], total_credits: 0 });

test("two plans of one run with no session event between them have ids of their own; after either, a poller gets only what followed", () => {
  const entries = [entry(1, 10, "thread.created"), entry(2, 20, "user.message", "run.created")];
  const raws = [
    runEvent(0, 21, "JobQueued", {}), // not shown: skipped without being decoded
    plan(1, 30, "p1"), runEvent(2, 35, "PlanApproved", { plan_id: "p1" }),
    runEvent(3, 40, "ToolCalled", { step: 2, call_id: "c1", name: "register_asset", args: {} }),
    runEvent(4, 42, "TextEmitted", { step: 2, content: "…" }),
    runEvent(5, 45, "ToolCompleted", { call_id: "c1", name: "register_asset", result: null, error: null, asset: null }),
    plan(6, 50, "p2"),
  ];
  const placed = logWithExtras(entries, runExtras(raws), true);
  // The first plan is decided: it keeps its place only. The second waits: shown, with the plan as content.
  expect(visible(placed).map((e) => e.id)).toEqual(["1", "2", "2.run", "2.tool4", "2.tool6", "2.permission7"]);
  const request = visible(placed).at(-1)!;
  expect(request.type).toBe("permission.requested");
  expect(JSON.parse(request.content!).plan.plan_id).toBe("p2");
  // A poller that saw the second request has nothing new; one that saw the first gets the rest, once.
  expect(visible(after(placed, "2.permission7", 2))).toEqual([]);
  expect(visible(after(placed, "2.permission2", 2)).map((e) => e.id)).toEqual(["2.tool4", "2.tool6", "2.permission7"]);
  // Once the second is decided too, both only keep their places, and `after` either still resumes right after it.
  const decided = logWithExtras(entries, runExtras([...raws, runEvent(7, 55, "PlanRejected", { plan_id: "p2", reason: null })]), true);
  expect(visible(decided).map((e) => e.id)).toEqual(["1", "2", "2.run", "2.tool4", "2.tool6"]);
  expect(visible(after(decided, "2.permission7", 2))).toEqual([]);
  expect(visible(after(decided, "2.permission2", 2)).map((e) => e.id)).toEqual(["2.tool4", "2.tool6"]);
});

test("a request is answered by the run's end too: a run cancelled while it waits shows no request", () => {
  const entries = [entry(1, 10, "thread.created"), entry(2, 20, "user.message", "run.created")];
  const raws = [plan(1, 30, "p1"), runEvent(2, 40, "JobCancelled", { reason: "user_interrupt" })];
  expect(visible(logWithExtras(entries, runExtras(raws), true)).map((e) => e.id)).toEqual(["1", "2", "2.run"]);
  expect(visible(logWithExtras(entries, runExtras(raws.slice(0, 1)), true)).map((e) => e.id)).toEqual(["1", "2", "2.run", "2.permission2"]);
});

test("an after the log never gave is refused (null); a bare cursor of an event that shows nothing resumes before what followed it", () => {
  const entries = [entry(2, 20, "user.message", "run.created"), entry(3, 50, "run.completed")];
  const placed = logWithExtras(entries, [extra(30, "permission5", "permission.requested", true), extra(40, "tool6", "tool.started")], true);
  for (const id of ["2.tool", "2.tool7", "2.permission6", "2.message", "2.zzz6", "02"]) expect([id, eventsAfter(placed, id, 2)]).toEqual([id, null]);
  // The old unnumbered request id resumes after everything placed at its cursor, where a request was placed.
  expect(after(placed, "2.permission", 2).map((e) => e.id)).toEqual(["3"]);
  expect(eventsAfter(logWithExtras(entries, [extra(40, "tool6", "tool.started")], true), "2.permission", 2)).toBeNull();
  // A rename (no event of its own) at cursor 2, then a tool step placed after it.
  const renamed = logWithExtras([{ revision: 1, position: 20n, events: [] }, entry(3, 50, "run.completed")], [extra(40, "tool6", "tool.started")], true);
  expect(after(renamed, "2", 2).map((e) => e.id)).toEqual(["2.tool6", "3"]);
});

test("the turns open at an event are read back only to the last message sent while none was open; the run in flight is their first", () => {
  // Newest first: run c ended, b was sent (queued), c was sent (queued), a was sent (none open), then older history.
  const back = [{ ended: "c" }, { sent: "c", queued: true }, { sent: "b", queued: true }, { sent: "a", queued: false }, { sent: "old", queued: false }];
  expect(openTurns(back)).toEqual({ turns: ["a", "b"], done: true });
  expect(openTurns([{ sent: "x", queued: true }])).toEqual({ turns: ["x"], done: false });
  // a runs through the read, then b; d is sent after both and runs last.
  expect([...runsInFlight(["a", "b"], [null, { sent: "d", queued: true }, { ended: "a" }, null, { ended: "b" }])]).toEqual(["a", "b", "d"]);
  expect([...runsInFlight([], [null])]).toEqual([]);
});
