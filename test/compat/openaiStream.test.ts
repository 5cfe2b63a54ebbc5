/**
 * The OpenAI surface's stream translation as a pure function (src/compat/openai/responses.ts): which
 * Responses events each job event gives, in what order, and how they are numbered, so that the SDK's
 * `responses.stream()` can build a response from them and a resume by sequence number is exact.
 */
import { describe, expect, test } from "bun:test";
import type { RecordedEvent } from "../../src/eventstore/port.ts";
import { emptyFold, foldJobEvent, SEQ_PER_EVENT, streamEventsOf, cursorOfSequence, type JobFold, type StreamEvent } from "../../src/compat/openai/responses.ts";

const ID = "resp_unit";

const queued = {
  job_id: ID, kind: "message", session_id: "sess_unit", message_id: "msg_unit", agent_id: "agt_unit", user_id: "u",
  input: { content: "hi", attachments: [], media_url: null, context: null }, model: null, output_schema: null,
};

/** A job stream of these events (type, data), as the store would give them back. */
const recorded = (events: Array<[string, unknown]>): RecordedEvent[] =>
  events.map(([type, data], i) => ({
    id: `e${i}`, type, streamId: `job-${ID}`, revision: BigInt(i), position: BigInt(i), data, metadata: { app_id: "app" }, created: new Date(1_700_000_000_000 + i),
  }) as RecordedEvent);

/** Every stream event of the job, translated event by event as a stream does. */
function translate(events: RecordedEvent[]): StreamEvent[][] {
  let fold: JobFold = emptyFold(ID);
  return events.map((e) => {
    const before = fold;
    fold = foldJobEvent(fold, e);
    return streamEventsOf(e, before, fold);
  });
}

describe("the stream events of a job", () => {
  test("a completion with no text before it opens and closes the message item: the most one job event gives", () => {
    const out = translate(recorded([["JobQueued", queued], ["JobStarted", { attempt: 1, runner_id: "r" }], ["JobCompleted", { content: "All done.", result: null }]]));
    expect(out.map((events) => events.map((e) => e.type))).toEqual([
      ["response.created"], ["response.in_progress"],
      ["response.output_item.added", "response.content_part.added", "response.output_text.delta", "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"],
    ]);
    expect(out[2]!.length).toBeLessThanOrEqual(SEQ_PER_EVENT);
    // The i-th event of the job event at cursor N (revision + 1) is N * SEQ_PER_EVENT + i.
    expect(out.map((events) => events.map((e) => e.sequence_number))).toEqual([[8], [16], [24, 25, 26, 27, 28, 29, 30]]);
    expect(out.flat().map((e) => cursorOfSequence(e.sequence_number))).toEqual([1, 2, 3, 3, 3, 3, 3, 3, 3]);
    const done = out[2]!.at(-1)!.response as { output: Array<{ id: string; status: string; content: Array<{ text: string }> }>; output_text: string };
    expect(done.output).toMatchObject([{ id: `msg_${ID}`, status: "completed", content: [{ text: "All done." }] }]);
    expect(done.output_text).toBe("All done.");
  });

  test("text of two model steps streams as the reply joins them, so the deltas add up to it", () => {
    const out = translate(recorded([
      ["JobQueued", queued], ["JobStarted", { attempt: 1, runner_id: "r" }],
      ["TextEmitted", { step: 1, content: "Let me look." }], ["TextEmitted", { step: 2, content: "Found " }], ["TextEmitted", { step: 2, content: "it." }],
      ["JobCompleted", { content: "Let me look.\n\nFound it.", result: null }],
    ])).flat();
    const deltas = out.filter((e) => e.type === "response.output_text.delta").map((e) => e.delta);
    expect(deltas).toEqual(["Let me look.", "\n\nFound ", "it."]);
    expect(out.map((e) => e.type).filter((t) => t !== "response.output_text.delta")).toEqual([
      "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
      "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed",
    ]);
    expect(out.find((e) => e.type === "response.output_text.done")!.text).toBe(deltas.join(""));
  });

  test("a failure after some text closes the item as incomplete before response.failed; with none, only response.failed", () => {
    const failed = ["JobFailed", { error: { code: "provider_unavailable", message: "down" } }] as [string, unknown];
    const withText = translate(recorded([["JobQueued", queued], ["TextEmitted", { step: 1, content: "Part" }], failed]));
    expect(withText[2]!.map((e) => e.type)).toEqual(["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.failed"]);
    expect(withText[2]![2]!.item).toMatchObject({ status: "incomplete", content: [{ text: "Part" }] });
    const without = translate(recorded([["JobQueued", queued], failed]));
    expect(without[1]!.map((e) => e.type)).toEqual(["response.failed"]);
  });
});

describe("the response a job's events fold to", () => {
  const fold = (events: RecordedEvent[]) => events.reduce(foldJobEvent, emptyFold(ID));

  test("a step the runner discarded leaves the response's text; the redone step replaces it", () => {
    const f = fold(recorded([
      ["JobQueued", queued], ["JobStarted", { attempt: 1, runner_id: "r" }],
      ["TextEmitted", { step: 1, content: "First step." }],
      ["TextEmitted", { step: 2, content: "Hel" }],
      ["JobReleased", { reason: "shutdown", step: 2, discarded_step: 2, tool_calls: [] }],
      ["JobStarted", { attempt: 2, runner_id: "r2" }],
      ["TextEmitted", { step: 2, content: "Hello there" }],
    ]));
    expect(f.text).toBe("First step.\n\nHello there");
  });

  test("a proposed plan is an mcp_approval_request item after the text before it", () => {
    const f = fold(recorded([
      ["JobQueued", queued], ["JobStarted", { attempt: 1, runner_id: "r" }],
      ["TextEmitted", { step: 1, content: "I'll register it." }],
      ["PlanProposed", { step: 1, plan_id: "plan_1", title: "Register", steps: [{ call_id: "c1", tool: "register_asset", args: { url: "u" }, estimated_credits: 0 }], total_credits: 0 }],
    ]));
    const events = translate(recorded([
      ["JobQueued", queued], ["JobStarted", { attempt: 1, runner_id: "r" }],
      ["TextEmitted", { step: 1, content: "I'll register it." }],
      ["PlanProposed", { step: 1, plan_id: "plan_1", title: "Register", steps: [{ call_id: "c1", tool: "register_asset", args: { url: "u" }, estimated_credits: 0 }], total_credits: 0 }],
    ]));
    expect(events[3]!.map((e) => [e.type, e.output_index])).toEqual([["response.output_item.added", 1], ["response.output_item.done", 1]]);
    expect(f.items.map((i) => i.kind)).toEqual(["message", "approval"]);
  });
});
