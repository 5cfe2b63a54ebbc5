/**
 * A send-events batch, decided whole before any of it is applied: each event's shape, every run it
 * names and the state that run must be in, checked against the Thread as it stands (and as the batch's
 * own earlier events leave it). Pure: the routes read the runs and hand them in; a refusal here means
 * nothing of the batch was written.
 */
import { ConflictError, NotFoundError } from "../../core/errors.ts";
import { contentText, type MosooSentEvent } from "./wire.ts";

/** What the planner needs to know of a run: its id and our job status. */
export interface RunState {
  id: string;
  status: string;
}

export interface BatchView {
  /** The Thread's run in flight (its first turn), if any. */
  current: RunState | null;
  /** A run of this Thread by id; null when the id names no run of it. */
  runOf(id: string): RunState | null;
  /** The ids the n-th user message of the batch will create (fixed per Idempotency-Key). */
  idsOf(n: number): { message_id: string; job_id: string };
  /**
   * True when this execution takes over an earlier one of the same request that did not finish: a
   * decision or interrupt its run no longer waits for was then (most likely) already applied.
   */
  resumed: boolean;
}

export type Step =
  | { kind: "message"; clientRequestId: string | null; text: string; message_id: string; job_id: string }
  | { kind: "decision"; clientRequestId: string | null; jobId: string; allow: boolean; reason: string | null }
  | { kind: "interrupt"; clientRequestId: string | null; jobId: string; reason: string }
  /** Accepted without a write: nothing to act on (a warning says why). */
  | { kind: "noop"; clientRequestId: string | null; warning: { code: string; message: string } };

const ENDED = new Set(["completed", "failed", "cancelled"]);

/**
 * The steps of a batch, in order; throws the typed error of the first event that cannot be applied
 * (400 a content type we cannot take, 404 a run not of this Thread, 409 a decision nothing waits for).
 */
export function planBatch(events: readonly MosooSentEvent[], view: BatchView): Step[] {
  const steps: Step[] = [];
  // Runs this batch already decides or stops: each takes one decision, and none after an interrupt.
  const decided = new Set<string>();
  const interrupted = new Set<string>();
  let messages = 0;
  let firstNewRun: string | null = null;
  events.forEach((event, i) => {
    const clientRequestId = event.client_request_id ?? null;
    const param = `events[${i}]`;
    switch (event.type) {
      case "user_message":
      case "user.message": {
        const text = event.type === "user_message" ? event.text : contentText(event.content, `${param}.content`);
        const ids = view.idsOf(messages++);
        firstNewRun ??= ids.job_id;
        steps.push({ kind: "message", clientRequestId, text, ...ids });
        return;
      }
      case "permission_decision": {
        const run = event.run_id !== undefined ? view.runOf(event.run_id) : view.current;
        if (event.run_id !== undefined && !run) throw new NotFoundError("Run not found in this Thread", { param: `${param}.run_id` }, "run_not_found");
        if (!run || run.status !== "awaiting_approval" || decided.has(run.id) || interrupted.has(run.id)) {
          if (view.resumed && run && run.status !== "awaiting_approval") {
            steps.push({ kind: "noop", clientRequestId, warning: { code: "already_decided", message: `Run ${run.id} is no longer waiting for a decision` } });
            return;
          }
          throw new ConflictError("no_pending_permission", "No run of this Thread is waiting for a permission decision", { param });
        }
        decided.add(run.id);
        steps.push({ kind: "decision", clientRequestId, jobId: run.id, allow: event.decision === "allow", reason: event.reason ?? null });
        return;
      }
      case "user_interrupt": {
        // The run in flight; in an idle Thread, the first run this batch starts.
        const inFlight = view.current && !ENDED.has(view.current.status) ? view.current.id : null;
        const target = inFlight ?? firstNewRun;
        if (!target || interrupted.has(target)) {
          steps.push({ kind: "noop", clientRequestId, warning: { code: "nothing_to_interrupt", message: "No run of this Thread is in flight" } });
          return;
        }
        interrupted.add(target);
        steps.push({ kind: "interrupt", clientRequestId, jobId: target, reason: event.reason ?? "user_interrupt" });
        return;
      }
      default: {
        const _: never = event;
        return _;
      }
    }
  });
  return steps;
}
