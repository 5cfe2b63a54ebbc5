/**
 * The Mushu wire format's status words as pure translations (src/compat/mushu/wire.ts): the doc's run
 * and conversation statuses for every job status of ours, which an end-to-end poll cannot pin down
 * (a run may pass through `running` between two polls).
 */
import { describe, expect, test } from "bun:test";
import { pollView, runStatus } from "../../src/compat/mushu/wire.ts";
import type { JobRow } from "../../projections/jobs/index.ts";

describe("Mushu status words", () => {
  test("Doc: run status values pending, running, complete, failed", () => {
    // Doc: "pending Queued, worker not yet started / running Worker is executing the agent /
    //       complete Agent succeeded, result is available / failed Agent failed, error message included"
    expect(["pending", "processing", "awaiting_approval", "completed", "failed", "cancelled"].map(runStatus))
      .toEqual(["pending", "running", "running", "complete", "failed", "failed"]);
  });

  test("Doc: the poll shows pending until the reply, then complete with result_text or failed", () => {
    const job = (status: string, extra: Partial<JobRow> = {}) => ({ status, content: null, result: null, error: null, ...extra }) as unknown as JobRow;
    expect(pollView(job("processing"))).toEqual({ status: "pending" });
    expect(pollView(job("awaiting_approval"))).toEqual({ status: "pending" });
    expect(pollView(job("completed", { content: "Great! Here's a 7-day plan", result: '{"days":7}' }))).toEqual({ status: "complete", result_text: "Great! Here's a 7-day plan", structured_result: { days: 7 } });
    expect(pollView(job("failed", { error: '{"code":"x","message":"Your OpenAI connection has expired."}' }))).toEqual({ status: "failed", error: "Your OpenAI connection has expired." });
  });
});
