/**
 * The Mosoo event log's placing of what no session event gives (tool steps, permission requests), as
 * units: each extra goes after the last session event recorded before it, keeps its id as later events
 * arrive, and a poller resumes after it — also after a request since decided, which only keeps its place.
 */
import { expect, test } from "bun:test";
import { cursorOfEventId, eventsAfter, logWithExtras, visible, type LogEntry, type LogExtra, type MosooEvent } from "../../src/compat/mosoo/wire.ts";

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
  expect(visible(eventsAfter(placed, "2.permission", 2)).map((e) => e.id)).toEqual(["2.tool8", "2.tool9"]);
  expect(visible(eventsAfter(placed, "2.tool8", 2)).map((e) => e.id)).toEqual(["2.tool9"]);
  expect(cursorOfEventId("12.tool34")).toBe(12);
  expect(cursorOfEventId("12.permission")).toBe(12);
  expect(cursorOfEventId("12.tool")).toBe(12);
  expect(cursorOfEventId("12.9")).toBeNull();
});
