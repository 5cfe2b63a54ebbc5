/** Prompt overrides in the agent decider, and what a job's start records of them. No I/O. */
import { describe, expect, test } from "bun:test";
import { NotFoundError, ValidationError } from "../../src/core/errors.ts";
import { fold } from "../../src/core/decider.ts";
import { agentDecider, effectivePrompt, effectiveSpec, type AgentCommand, type AgentEvent } from "../../src/domain/agent/agent.ts";
import { agentEvents } from "../../src/domain/agent/events.ts";
import { jobDecider, type JobEvent } from "../../src/domain/job/job.ts";
import { jobEvents } from "../../src/domain/job/events.ts";
import { agentRanWith } from "../../src/jobs/runner/conversation.ts";

const spec = { name: "a", description: "", system_prompt: "the default", model: { provider: null, name: null, parameters: {} }, tools: [], approval: "never" as const, output_schema: null };
const created: AgentEvent = { type: "AgentCreated", data: { agent_id: "a1", ...spec } };
const overridden = (system_prompt: string): AgentEvent => ({ type: "AgentPromptOverridden", data: { agent_id: "a1", system_prompt } });
const reverted: AgentEvent = { type: "AgentPromptReverted", data: { agent_id: "a1" } };
const given = (events: AgentEvent[], when: AgentCommand) => agentDecider.decide(when, fold(agentDecider, events));

describe("agent decider: prompt overrides", () => {
  test("an override is an event, and wins over the default", () => {
    expect(given([created], { type: "OverridePrompt", agent_id: "a1", system_prompt: "the override" })).toEqual([overridden("the override")]);
    const state = fold(agentDecider, [created, overridden("the override")]);
    expect(effectivePrompt(state)).toBe("the override");
    expect(effectiveSpec(state)).toEqual({ ...spec, system_prompt: "the override" });
    expect(state.spec!.system_prompt).toBe("the default");
  });

  test("the same override again records nothing; a different one does", () => {
    expect(given([created, overridden("x")], { type: "OverridePrompt", agent_id: "a1", system_prompt: "x" })).toEqual([]);
    expect(given([created, overridden("x")], { type: "OverridePrompt", agent_id: "a1", system_prompt: "y" })).toEqual([overridden("y")]);
  });

  test("an empty or blank prompt is refused, naming system_prompt and pointing to the revert", () => {
    for (const blank of ["", "  ", "\n"]) {
      let err: unknown;
      try {
        given([created, overridden("x")], { type: "OverridePrompt", agent_id: "a1", system_prompt: blank });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).details).toEqual({ param: "system_prompt" });
      expect((err as ValidationError).message).toContain("DELETE");
    }
  });

  test("a revert goes back to the default; with no override it records nothing", () => {
    expect(given([created, overridden("x")], { type: "RevertPrompt", agent_id: "a1" })).toEqual([reverted]);
    expect(given([created], { type: "RevertPrompt", agent_id: "a1" })).toEqual([]);
    expect(given([created, overridden("x"), reverted], { type: "RevertPrompt", agent_id: "a1" })).toEqual([]);
    expect(effectivePrompt(fold(agentDecider, [created, overridden("x"), reverted]))).toBe("the default");
  });

  test("a patch of the agent's prompt changes the default; the override still wins, and a revert then shows the new default", () => {
    const patched: AgentEvent = { type: "AgentPatched", data: { agent_id: "a1", patch: { system_prompt: "new default" } } };
    const state = fold(agentDecider, [created, overridden("x"), patched]);
    expect(effectivePrompt(state)).toBe("x");
    expect(state.spec!.system_prompt).toBe("new default");
    expect(effectivePrompt(fold(agentDecider, [created, overridden("x"), patched, reverted]))).toBe("new default");
  });

  test("only an active agent's prompt can change", () => {
    const deleted: AgentEvent = { type: "AgentDeleted", data: { agent_id: "a1" } };
    expect(() => given([], { type: "OverridePrompt", agent_id: "a1", system_prompt: "x" })).toThrow(NotFoundError);
    expect(() => given([created, deleted], { type: "OverridePrompt", agent_id: "a1", system_prompt: "x" })).toThrow(NotFoundError);
    expect(() => given([created, overridden("x"), deleted], { type: "RevertPrompt", agent_id: "a1" })).toThrow(NotFoundError);
  });

  test("the events fit their contract; an empty override does not", () => {
    expect(agentEvents.decode({ type: "AgentPromptOverridden", data: { agent_id: "a1", system_prompt: "x" }, metadata: {} })).toEqual(overridden("x"));
    expect(() => agentEvents.encode(overridden(""))).toThrow(/AgentPromptOverridden/);
  });
});

describe("job decider: what a start records of the agent", () => {
  const queued: JobEvent = {
    type: "JobQueued",
    data: {
      job_id: "j1", kind: "run", session_id: null, message_id: null, agent_id: "a1", user_id: "u1",
      input: { content: "hi", attachments: [], media_url: null, context: null }, model: null, output_schema: null,
    },
  };

  test("JobStarted carries the agent version and the hash of the prompt the attempt runs with", () => {
    const state = fold(agentDecider, [created, overridden("the override")]);
    const ranWith = agentRanWith(state, 1n)!;
    const sha = new Bun.CryptoHasher("sha256").update("the override").digest("hex");
    expect(ranWith).toEqual({ agent_version: 1, system_prompt_sha256: sha, prompt_overridden: true });
    expect(jobDecider.decide({ type: "StartJob", runner_id: "r", ranWith }, fold(jobDecider, [queued]))).toEqual([
      { type: "JobStarted", data: { attempt: 1, runner_id: "r", agent_version: 1, system_prompt_sha256: sha, prompt_overridden: true } },
    ]);
    expect(agentRanWith(fold(agentDecider, [created, overridden("x"), reverted]), 2n)).toMatchObject({ agent_version: 2, prompt_overridden: false });
    expect(agentRanWith(fold(agentDecider, []), -1n)).toBeUndefined();
  });

  test("a JobStarted written before these fields still reads", () => {
    expect(jobEvents.decode({ type: "JobStarted", data: { attempt: 1, runner_id: "r" }, metadata: {} })).toEqual({ type: "JobStarted", data: { attempt: 1, runner_id: "r" } });
  });
});
