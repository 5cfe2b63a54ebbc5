/** The job stream's events: their schemas and versions (see src/core/eventContract.ts). */
import { Type } from "@sinclair/typebox";
import { eventCodec, type EventsOf } from "../../core/eventContract.ts";
import { AttachmentSchema, ErrorSchema, JsonObject, Nullable, UsageFields } from "../shared/schemas.ts";
import { SkillRunSchema } from "../skill/events.ts";
import { CitationSchema } from "../shared/citations.ts";

const JobInput = Type.Object({
  content: Type.String(),
  attachments: Type.Array(AttachmentSchema),
  media_url: Nullable(Type.String()),
  context: Nullable(JsonObject),
  /** The skill the turn runs, as its message named it: which recipe, version and hash, and the prompt it made. */
  skill: Type.Optional(SkillRunSchema),
  /** The message's `client_data` (see MessageSent): its surface's record of the request, never shown to the model. */
  client_data: Type.Optional(JsonObject),
});

/** An asset a tool call registered: its session label (null in a run), and a URL or a file of the app. */
export const ToolAssetSchema = Type.Object({
  asset_label: Nullable(Type.String()), kind: Type.String(), url: Nullable(Type.String()), file_id: Nullable(Type.String()),
  prompt: Nullable(Type.String()),
});

const PlanStepSchema = Type.Object({ call_id: Type.String(), tool: Type.String(), args: Type.Unknown(), estimated_credits: Type.Number() });

export const JOB_EVENTS = {
  JobQueued: { version: 1, schema: Type.Object({
    job_id: Type.String(), kind: Type.Union([Type.Literal("message"), Type.Literal("run")]),
    session_id: Nullable(Type.String()), message_id: Nullable(Type.String()), agent_id: Type.String(), user_id: Type.String(),
    input: JobInput, model: Nullable(Type.String()), output_schema: Nullable(JsonObject),
    /** The budgets (usage-limit pools) the job holds a reservation in; settled when it ends. Optional: absent before limits. */
    budgets: Type.Optional(Type.Array(Type.String())),
  }) },
  /**
   * `runner_id` names the process that ran the attempt: for operators, never shown to API clients.
   * What the attempt ran with, for auditors: `agent_version`, the agent stream's revision the runner
   * loaded; `system_prompt_sha256`, the hash of the agent's effective system prompt (before the run's
   * context and output schema are appended); `prompt_overridden`, whether that prompt was the app's
   * override. Optional, added without a new version: events written before them still fit the schema.
   */
  JobStarted: { version: 1, schema: Type.Object({
    attempt: Type.Integer({ minimum: 1 }), runner_id: Type.String(),
    agent_version: Type.Optional(Type.Integer({ minimum: 0 })), system_prompt_sha256: Type.Optional(Type.String()),
    prompt_overridden: Type.Optional(Type.Boolean()),
  }) },
  TextEmitted: { version: 1, schema: Type.Object({ step: Type.Integer(), content: Type.String() }) },
  ThinkingEmitted: { version: 1, schema: Type.Object({ step: Type.Integer(), content: Type.String() }) },
  ToolCalled: { version: 1, schema: Type.Object({ step: Type.Integer(), call_id: Type.String(), name: Type.String(), args: Type.Unknown() }) },
  /**
   * `credits`: what the call cost the app (the tool's estimated_credits when it succeeded); absent before credits.
   * `assets`: every asset the call registered (`asset_label` null in a run, which has no session); absent
   * before tools could return several, when `asset` was the one. `asset` stays the first, for older readers.
   */
  ToolCompleted: { version: 1, schema: Type.Object({
    call_id: Type.String(), name: Type.String(), result: Type.Unknown(), error: Nullable(Type.String()), asset: Nullable(JsonObject),
    credits: Type.Optional(Type.Number({ minimum: 0 })),
    assets: Type.Optional(Type.Array(ToolAssetSchema)),
  }) },
  /** A running tool's progress: a fraction done (0..1), a message, or both. */
  ToolProgressed: { version: 1, schema: Type.Object({
    call_id: Type.String(), progress: Nullable(Type.Number({ minimum: 0, maximum: 1 })), message: Nullable(Type.String()),
  }) },
  /** A status line a running tool has for the user (MUAPI's `info`). */
  InfoEmitted: { version: 1, schema: Type.Object({ call_id: Type.String(), content: Type.String() }) },
  /** A canvas operation a running tool asks the client's canvas to apply (MUAPI's `canvas_op`). */
  CanvasOpEmitted: { version: 1, schema: Type.Object({ call_id: Type.String(), op: Type.String(), args: JsonObject }) },
  PlanProposed: { version: 1, schema: Type.Object({
    step: Type.Integer(), plan_id: Type.String(), title: Type.String(), steps: Type.Array(PlanStepSchema), total_credits: Type.Number(),
  }) },
  PlanApproved: { version: 1, schema: Type.Object({ plan_id: Type.String() }) },
  PlanRejected: { version: 1, schema: Type.Object({ plan_id: Type.String(), reason: Nullable(Type.String()) }) },
  CancelRequested: { version: 1, schema: Type.Object({ reason: Nullable(Type.String()) }) },
  JobCancelled: { version: 1, schema: Type.Object({ reason: Type.String() }) },
  /**
   * `citations`: the memory entries the agent was given while it answered (recalled into its context,
   * or returned by its recall tool); absent when there were none (and in jobs before memory).
   */
  /**
   * The runner handed the job back unfinished (its process is shutting down): the job stays
   * `processing`, and the next runner resumes it from its stream instead of failing it as interrupted.
   * `step`: the last model step the attempt reached (0: none). `discarded_step`: a model step cut in the
   * middle of its model call — the text it streamed is void, and the resume calls the model again as
   * that step (null when the job stopped between steps). `tool_calls`: the calls of the step whose
   * tools were running when it stopped (empty otherwise); the resume runs those without a ToolCompleted.
   */
  JobReleased: { version: 1, schema: Type.Object({
    reason: Type.String(), step: Type.Integer({ minimum: 0 }), discarded_step: Nullable(Type.Integer({ minimum: 1 })),
    tool_calls: Type.Array(Type.Object({ call_id: Type.String(), name: Type.String(), args: Type.Unknown() })),
  }) },
  JobCompleted: { version: 1, schema: Type.Object({ content: Type.String(), result: Type.Unknown(), citations: Type.Optional(Type.Array(CitationSchema)) }) },
  JobFailed: { version: 1, schema: Type.Object({ error: ErrorSchema }) },
  /**
   * `credits`: what the step's tokens cost the app, priced when recorded (src/domain/billing/prices.ts);
   * 0 for test data and for steps an end user's own credential paid. Absent in events before credits.
   * `funded_by: "end_user"`: the end user's own credential paid the provider (BYOS); absent: the app.
   */
  UsageRecorded: { version: 1, schema: Type.Object({
    step: Type.Integer(), provider: Type.String(), model: Type.String(), ...UsageFields, credits: Type.Optional(Type.Number({ minimum: 0 })),
    funded_by: Type.Optional(Type.Literal("end_user")),
  }) },
  /**
   * What of the session's history the model was shown, when it did not all fit the context budget:
   * the summary used (of the turns through `summary_through`, `summarized_turns` of them), the turns
   * sent as they were (the oldest is `first_message_id`), and how many were left out altogether.
   * Absent from a job: the whole history was sent.
   */
  ContextPrepared: { version: 1, schema: Type.Object({
    strategy: Type.Union([Type.Literal("summarize"), Type.Literal("drop")]), budget_tokens: Type.Integer({ minimum: 1 }),
    estimated_tokens: Type.Integer({ minimum: 0 }), turns_total: Type.Integer({ minimum: 0 }), turns_sent: Type.Integer({ minimum: 0 }),
    first_message_id: Nullable(Type.String()), summary_through: Nullable(Type.String()), summarized_turns: Type.Integer({ minimum: 0 }),
    dropped_turns: Type.Integer({ minimum: 0 }),
  }) },
};

export type JobEvent = EventsOf<typeof JOB_EVENTS>;
export const jobEvents = eventCodec(JOB_EVENTS);
