/**
 * The Mosoo send-events planner (src/compat/mosoo/batch.ts) as a decider spec: given the Thread's runs,
 * when a batch is planned, then every step is known — or the batch is refused whole — before anything
 * is written. Doc (seed 001): "POST /threads/{threadId}/events sends user messages, permission
 * decisions, or interrupts."
 */
import { expect, test } from "bun:test";
import { planBatch, type BatchView, type RunState } from "../../src/compat/mosoo/batch.ts";
import type { MosooSentEvent } from "../../src/compat/mosoo/wire.ts";

const view = (current: RunState | null, runs: RunState[] = current ? [current] : [], resumed = false): BatchView => ({
  current, resumed, runOf: (id) => runs.find((r) => r.id === id) ?? null, idsOf: (n) => ({ message_id: `msg_${n}`, job_id: `job_${n}` }),
});
const waiting = { id: "job_w", status: "awaiting_approval" };

test("messages and a decision plan in order, with the ids fixed for the request", () => {
  const events: MosooSentEvent[] = [
    { type: "user_message", text: "a" }, { type: "user.message", content: [{ type: "text", text: "b" }, { type: "text", text: "c" }] },
    { type: "permission_decision", decision: "allow", client_request_id: "d" },
  ];
  expect(planBatch(events, view(waiting))).toEqual([
    { kind: "message", clientRequestId: null, text: "a", message_id: "msg_0", job_id: "job_0" },
    { kind: "message", clientRequestId: null, text: "b\n\nc", message_id: "msg_1", job_id: "job_1" },
    { kind: "decision", clientRequestId: "d", jobId: "job_w", allow: true, reason: null },
  ]);
});

test("a refusal anywhere refuses the whole batch", () => {
  const msg: MosooSentEvent = { type: "user_message", text: "a" };
  // Nothing waits for a decision.
  expect(() => planBatch([msg, { type: "permission_decision", decision: "allow" }], view({ id: "job_r", status: "processing" }))).toThrow(expect.objectContaining({ code: "no_pending_permission" }));
  // A run of another Thread.
  expect(() => planBatch([msg, { type: "permission_decision", decision: "deny", run_id: "job_x" }], view(waiting))).toThrow(expect.objectContaining({ code: "run_not_found" }));
  // Two decisions for one run, or one after an interrupt of it.
  expect(() => planBatch([{ type: "permission_decision", decision: "allow" }, { type: "permission_decision", decision: "deny" }], view(waiting))).toThrow(expect.objectContaining({ code: "no_pending_permission" }));
  expect(() => planBatch([{ type: "user_interrupt" }, { type: "permission_decision", decision: "allow" }], view(waiting))).toThrow(expect.objectContaining({ code: "no_pending_permission" }));
  // Content we cannot take, named by its place in the batch.
  expect(() => planBatch([msg, { type: "user.message", content: [{ type: "image" }] }], view(null))).toThrow(expect.objectContaining({ code: "unsupported_content_type", details: { param: "events[1].content[0].type" } }));
});

test("an interrupt stops the run in flight, else the first run the batch starts; with nothing to stop it is a warning", () => {
  expect(planBatch([{ type: "user_interrupt" }], view({ id: "job_r", status: "processing" }))).toEqual([
    { kind: "interrupt", clientRequestId: null, jobId: "job_r", reason: "user_interrupt" },
  ]);
  expect(planBatch([{ type: "user_message", text: "go" }, { type: "user_interrupt", reason: "changed my mind" }], view(null))[1]).toEqual(
    { kind: "interrupt", clientRequestId: null, jobId: "job_0", reason: "changed my mind" },
  );
  expect(planBatch([{ type: "user_interrupt" }], view({ id: "job_done", status: "completed" }))[0]).toMatchObject({ kind: "noop", warning: { code: "nothing_to_interrupt" } });
  expect(planBatch([{ type: "user_interrupt" }, { type: "user_interrupt" }], view(waiting))[1]).toMatchObject({ kind: "noop", warning: { code: "nothing_to_interrupt" } });
});

test("a retry taking over an unfinished execution does not decide twice", () => {
  // The first execution approved the run before it stopped: the retry reports it, and applies the rest.
  const approved = { id: "job_w", status: "processing" };
  const steps = planBatch([{ type: "permission_decision", decision: "allow" }, { type: "user_message", text: "next" }], view(approved, [approved], true));
  expect(steps.map((s) => s.kind)).toEqual(["noop", "message"]);
  const decided = planBatch([{ type: "permission_decision", decision: "allow", run_id: "job_w" }], view(null, [approved], true));
  expect(decided[0]).toMatchObject({ kind: "noop", warning: { code: "already_decided" } });
});
