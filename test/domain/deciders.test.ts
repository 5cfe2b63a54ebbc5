/** Decider specs: given past events, when a command, then new events (or a typed error). No I/O. */
import { describe, expect, test } from "bun:test";
import { ConflictError, NotFoundError } from "../../src/core/errors.ts";
import { fold, type Decider, type DomainEvent } from "../../src/core/decider.ts";
import { jobDecider, type JobCommand, type JobEvent } from "../../src/domain/job/job.ts";
import { sessionDecider, type SessionCommand, type SessionEvent } from "../../src/domain/session/session.ts";
import { agentDecider } from "../../src/domain/agent/agent.ts";
import { idempotencyDecider, type IdempotencyCommand, type IdempotencyEvent } from "../../src/domain/idempotency/idempotency.ts";

function spec<C, E extends DomainEvent, S>(decider: Decider<C, E, S>) {
  return (given: E[], when: C) => decider.decide(when, fold(decider, given));
}

const session = spec(sessionDecider);
const job = spec(jobDecider);

const started: SessionEvent = { type: "SessionStarted", data: { session_id: "s1", agent_id: "a1", user_id: "u1", name: "n", external_ref: null, metadata: {} } };
const send = (job_id: string, multitask: "reject" | "enqueue" = "reject"): SessionCommand => ({
  type: "SendMessage", message_id: `m-${job_id}`, job_id, content: "hi", attachments: [], model: null, context: null, multitask,
});
const sent = (job_id: string, queued = false): SessionEvent => ({
  type: "MessageSent", data: { message_id: `m-${job_id}`, job_id, content: "hi", attachments: [], model: null, context: null, queued },
});

describe("session decider", () => {
  test("a message on an idle session starts a turn", () => {
    expect(session([started], send("j1"))).toEqual([sent("j1")]);
  });

  test("a second message while a turn is in flight is busy, naming the active job", () => {
    const err = (() => { try { session([started, sent("j1")], send("j2")); } catch (e) { return e; } })() as ConflictError;
    expect(err).toBeInstanceOf(ConflictError);
    expect(err.code).toBe("session_busy");
    expect(err.details).toMatchObject({ active_job_id: "j1" });
  });

  test("with multitask=enqueue it is queued behind the turn in flight", () => {
    expect(session([started, sent("j1")], send("j2", "enqueue"))).toEqual([sent("j2", true)]);
  });

  test("ending the turn frees the session; ending it twice decides nothing", () => {
    const end: SessionCommand = { type: "EndTurn", job_id: "j1", outcome: "completed", reply: null, error: null };
    const ended = session([started, sent("j1")], end);
    expect(ended[0]!.type).toBe("TurnEnded");
    expect(session([started, sent("j1"), ...ended], end)).toEqual([]);
    expect(session([started, sent("j1"), ...ended], send("j2"))).toEqual([sent("j2")]);
  });

  test("asset labels count up from asset_1", () => {
    const reg: SessionCommand = { type: "RegisterAsset", asset_id: "ast_1", url: "https://x/1.png", kind: "image", source_tool: "upload", prompt: null, model: null, job_id: null };
    const first = session([started], reg);
    expect(first[0]!.data).toMatchObject({ asset_label: "asset_1" });
    expect(session([started, ...first], reg)[0]!.data).toMatchObject({ asset_label: "asset_2" });
  });

  test("a session file offered once goes with the first message to carry it, and with no later one", () => {
    const file = (id: string) => ({ type: "file" as const, file_id: id, name: `${id}.txt`, content_type: "text/plain", size: 1, sha256: "x" });
    const offer = (job_id: string, given = [] as ReturnType<typeof file>[]): SessionCommand => ({
      type: "SendMessage", message_id: `m-${job_id}`, job_id, content: "hi", attachments: given, model: null, context: null, multitask: "enqueue",
      once_files: [file("f1"), file("f2"), file("f1")],
    });
    const first = session([started], offer("j1"));
    expect(first[0]!.data).toMatchObject({ attachments: [file("f1"), file("f2")] });
    // Decided on the state that records the first message (as a concurrent one is, once its append is refused): nothing left to take.
    expect(session([started, ...first], offer("j2"))[0]!.data).toMatchObject({ attachments: [] });
    // A file the message names itself is not added twice; a file an earlier message named is not offered again.
    expect(session([started], offer("j1", [file("f2")]))[0]!.data).toMatchObject({ attachments: [file("f2"), file("f1")] });
    const named = { ...sent("j1"), data: { ...sent("j1").data, attachments: [file("f2")] } } as SessionEvent;
    expect(session([started, named], offer("j2"))[0]!.data).toMatchObject({ attachments: [file("f1")] });
  });

  test("a deleted session accepts nothing; an archived one refuses messages", () => {
    expect(() => session([started, { type: "SessionDeleted", data: {} }], send("j1"))).toThrow(NotFoundError);
    expect(() => session([started, { type: "SessionArchived", data: {} }], send("j1"))).toThrow(ConflictError);
  });
});

const queued: JobEvent = {
  type: "JobQueued",
  data: { job_id: "j1", kind: "message", session_id: "s1", message_id: "m1", agent_id: "a1", user_id: "u1",
    input: { content: "hi", attachments: [], media_url: null, context: null }, model: null, output_schema: null },
};
const startedJob: JobEvent = { type: "JobStarted", data: { attempt: 1, runner_id: "r" } };
const plan: JobEvent = { type: "PlanProposed", data: { step: 1, plan_id: "p1", title: "t", steps: [], total_credits: 0 } };

describe("job decider", () => {
  test("approve only while awaiting approval, and only once", () => {
    expect(job([queued, startedJob, plan], { type: "ApprovePlan" })).toEqual([{ type: "PlanApproved", data: { plan_id: "p1" } }]);
    expect(() => job([queued, startedJob], { type: "ApprovePlan" })).toThrow(ConflictError);
    expect(() => job([queued, startedJob, plan, { type: "PlanApproved", data: { plan_id: "p1" } }], { type: "ApprovePlan" })).toThrow(ConflictError);
    // A decision names the plan its decider saw: it does not apply to another plan proposed meanwhile.
    expect(job([queued, startedJob, plan], { type: "ApprovePlan", plan_id: "p1" })).toEqual([{ type: "PlanApproved", data: { plan_id: "p1" } }]);
    expect(() => job([queued, startedJob, plan], { type: "ApprovePlan", plan_id: "p0" })).toThrow(ConflictError);
    expect(() => job([queued, startedJob, plan], { type: "RejectPlan", reason: null, plan_id: "p0" })).toThrow(ConflictError);
  });

  test("reject ends the job cancelled", () => {
    expect(job([queued, startedJob, plan], { type: "RejectPlan", reason: null }).map((e) => e.type)).toEqual(["PlanRejected", "JobCancelled"]);
  });

  test("cancel: a queued or waiting job ends at once; a running one is asked; an ended one refuses", () => {
    const cancel = (held: boolean): JobCommand => ({ type: "RequestCancel", reason: null, heldByRunner: held });
    expect(job([queued], cancel(false)).map((e) => e.type)).toEqual(["CancelRequested", "JobCancelled"]);
    expect(job([queued, startedJob, plan], cancel(false)).map((e) => e.type)).toEqual(["CancelRequested", "JobCancelled"]);
    expect(job([queued, startedJob], cancel(true)).map((e) => e.type)).toEqual(["CancelRequested"]);
    // Nobody holds a "processing" job (its runner died): it ends now rather than never.
    expect(job([queued, startedJob], cancel(false)).map((e) => e.type)).toEqual(["CancelRequested", "JobCancelled"]);
    expect(() => job([queued, startedJob, { type: "JobCompleted", data: { content: "", result: null } }], cancel(true))).toThrow(ConflictError);
  });

  test("once a cancel is requested the runner may not record more steps", () => {
    const given = [queued, startedJob, { type: "CancelRequested", data: { reason: null } } as JobEvent];
    expect(() => job(given, { type: "EmitText", step: 1, content: "x" })).toThrow(ConflictError);
    expect(job(given, { type: "CancelJob", reason: "cancelled" })[0]!.type).toBe("JobCancelled");
  });

  test("each start is a new attempt; a job that ended cannot start", () => {
    expect(job([queued], { type: "StartJob", runner_id: "r" })).toEqual([{ type: "JobStarted", data: { attempt: 1, runner_id: "r" } }]);
    expect(job([queued, startedJob], { type: "StartJob", runner_id: "r2" })).toEqual([{ type: "JobStarted", data: { attempt: 2, runner_id: "r2" } }]);
    expect(() => job([queued, { type: "JobFailed", data: { error: { code: "x", message: "y" } } }], { type: "StartJob", runner_id: "r" })).toThrow(ConflictError);
  });

  test("a running job is released for a resume, not failed; a pending cancel ends it instead", () => {
    const text: JobEvent = { type: "TextEmitted", data: { step: 1, content: "partial" } };
    const release = { reason: "shutdown", step: 1, discarded_step: 1, tool_calls: [] };
    const released: JobEvent = { type: "JobReleased", data: release };
    expect(job([queued, startedJob, text], { type: "ReleaseJob", release })).toEqual([released]);
    // Resumable again, though the cut attempt had already streamed: the next runner resumes it.
    expect(fold(jobDecider, [queued, startedJob, text])).toMatchObject({ status: "processing", resumable: false, sideEffectsThisAttempt: 1 });
    expect(fold(jobDecider, [queued, startedJob, text, released])).toMatchObject({ status: "processing", resumable: true });
    expect(job([queued, startedJob, text, released], { type: "StartJob", runner_id: "r2" })).toEqual([{ type: "JobStarted", data: { attempt: 2, runner_id: "r2" } }]);
    const cancel: JobEvent = { type: "CancelRequested", data: { reason: "stop" } };
    expect(job([queued, startedJob, cancel], { type: "ReleaseJob", release })).toEqual([{ type: "JobCancelled", data: { reason: "stop" } }]);
    expect(() => job([queued], { type: "ReleaseJob", release })).toThrow(ConflictError);
    expect(() => job([queued, startedJob, { type: "JobCompleted", data: { content: "", result: null } }], { type: "ReleaseJob", release })).toThrow(ConflictError);
  });

  test("usage adds up across steps, cached and reasoning tokens included", () => {
    const usage = (n: number): JobEvent => ({ type: "UsageRecorded", data: { step: n, provider: "p", model: "m", prompt_tokens: 10, completion_tokens: 5, cached_tokens: 2, reasoning_tokens: 1 } });
    expect(fold(jobDecider, [queued, startedJob, usage(1), usage(2)]).usage).toEqual({ prompt_tokens: 20, completion_tokens: 10, cached_tokens: 4, reasoning_tokens: 2 });
  });
});

describe("agent decider", () => {
  test("create once; update and delete only an active agent", () => {
    const spec0 = { name: "a", description: "", system_prompt: "", model: { provider: null, name: null, parameters: {} }, tools: [], approval: "never" as const, output_schema: null };
    const created = agentDecider.decide({ type: "CreateAgent", agent_id: "a1", spec: spec0 }, agentDecider.initialState);
    const state = fold(agentDecider, created);
    expect(() => agentDecider.decide({ type: "CreateAgent", agent_id: "a1", spec: spec0 }, state)).toThrow(ConflictError);
    const deleted = fold(agentDecider, [...created, { type: "AgentDeleted", data: { agent_id: "a1" } }]);
    expect(() => agentDecider.decide({ type: "UpdateAgent", agent_id: "a1", patch: { name: "b" } }, deleted)).toThrow(NotFoundError);
  });
});

describe("idempotency decider", () => {
  const given = spec(idempotencyDecider);
  const owner = { instance: "p1", host: "h", pid: 1 };
  const claim = (fingerprint: string, claimLive = false, legacyFingerprint?: string): IdempotencyCommand => ({
    type: "ClaimKey", key_hash: "k", fingerprint, legacyFingerprint, owner: { ...owner, instance: "p2" }, now: 2, resource_ids: { session: "sess_new" }, claimLive,
  });
  const claimed: IdempotencyEvent = {
    type: "IdempotencyKeyClaimed", data: { key_hash: "k", fingerprint: "f", resource_ids: { session: "sess_1" }, owner, at: 1, takeover: false },
  };

  test("a new key is claimed with the request's fresh resource ids", () => {
    expect(given([], claim("f"))).toMatchObject([{ type: "IdempotencyKeyClaimed", data: { resource_ids: { session: "sess_new" }, takeover: false } }]);
  });

  test("a live claim is in progress; a dead or abandoned one is taken over with its own resource ids", () => {
    expect(() => given([claimed], claim("f", true))).toThrow(expect.objectContaining({ code: "idempotency_in_progress" }));
    expect(given([claimed], claim("f", false))).toMatchObject([{ data: { resource_ids: { session: "sess_1" }, takeover: true } }]);
    const abandoned: IdempotencyEvent = { type: "IdempotencyClaimAbandoned", data: { instance: "p1", at: 3 } };
    expect(given([claimed, abandoned], claim("f", true))).toMatchObject([{ data: { resource_ids: { session: "sess_1" }, takeover: true } }]);
  });

  test("a released key is free for another request; a recorded one replays or conflicts", () => {
    const released: IdempotencyEvent = { type: "IdempotencyKeyReleased", data: { status: 409, code: "session_busy" } };
    expect(given([claimed, released], claim("other"))).toMatchObject([{ data: { fingerprint: "other", takeover: false } }]);
    const recorded: IdempotencyEvent = { type: "IdempotentResponseRecorded", data: { status: 201, body: {} } };
    expect(given([claimed, recorded], claim("f"))).toEqual([]);
    expect(() => given([claimed, recorded], claim("other"))).toThrow(expect.objectContaining({ code: "idempotency_conflict" }));
    expect(() => given([claimed], claim("other"))).toThrow(expect.objectContaining({ code: "idempotency_conflict" }));
  });

  test("a key recorded under the earlier fingerprint format still replays for the same request", () => {
    const recorded: IdempotencyEvent = { type: "IdempotentResponseRecorded", data: { status: 201, body: {} } };
    expect(given([claimed, recorded], claim("new-format", false, "f"))).toEqual([]);
    expect(() => given([claimed, recorded], claim("new-format", false, "other"))).toThrow(expect.objectContaining({ code: "idempotency_conflict" }));
  });

  test("only the claim's holder may renew, release or abandon it; an outcome is recorded once", () => {
    expect(given([claimed], { type: "RenewClaim", instance: "p2", now: 5 })).toEqual([]);
    expect(given([claimed], { type: "ReleaseKey", instance: "p1", status: 404, code: "x" })).toHaveLength(1);
    const recorded: IdempotencyEvent = { type: "IdempotentResponseRecorded", data: { status: 201, body: {} } };
    expect(given([claimed, recorded], { type: "RecordResponse", instance: "p1", response: { status: 201, body: {} } })).toEqual([]);
  });
});
