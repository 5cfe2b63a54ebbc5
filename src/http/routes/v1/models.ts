/**
 * The /v1 response models, named: every route declares its response by one of these names, so the
 * OpenAPI document (`/docs/json`) lists each once under components and a typed client is typed
 * everywhere. Route modules `.use(v1Models)` and refer to them by name.
 */
import { Elysia, t } from "elysia";
import type { TSchema } from "@sinclair/typebox";
import { PublicEventSchema } from "./cursorEvents.ts";

const Nullable = <T extends TSchema>(schema: T) => t.Union([schema, t.Null()]);

/** Credits the work cost the app: its model steps priced by the price table, plus its tools' credits. */
const CreditsSpent = t.Number({ minimum: 0, description: "Credits charged to the app (0 for test keys and end-user-funded steps)" });

export const Usage = t.Object({
  prompt_tokens: t.Integer(), completion_tokens: t.Integer(), cached_tokens: t.Integer(), reasoning_tokens: t.Integer(),
});

/** A piece of stored knowledge a reply cites, with a snippet of it (memory entries; files later). */
const Citation = t.Union([t.Object({ memory_id: t.String(), snippet: t.String() }), t.Object({ file_id: t.String(), snippet: t.String() })]);

const Error = t.Object({ code: t.String(), message: t.String(), provider_request_id: t.Optional(t.String()) });

/** What an answer shows of a secret: whether it is set and, for long ones, its last 4 characters. */
export const SecretView = t.Object({ has_secret: t.Boolean(), last4: Nullable(t.String()) });

export const AgentTool = t.Union([
  t.Object({ type: t.Literal("builtin"), name: t.String(), requires_approval: t.Optional(t.Boolean()) }),
  t.Object({
    type: t.Literal("http"), name: t.String(), description: t.String(), url: t.String(), parameters: t.Record(t.String(), t.Unknown()),
    headers: t.Optional(t.Record(t.String(), SecretView, { description: "Header names with what may be shown of their values: the values are secrets, stored sealed and never returned." })),
    timeout_ms: t.Optional(t.Integer()), requires_approval: t.Optional(t.Boolean()), estimated_credits: t.Optional(t.Number()),
  }),
]);

export const Agent = t.Object({
  id: t.String(), object: t.Literal("agent"), name: t.String(), description: t.String(),
  system_prompt: t.String({ description: "The prompt the agent runs with: the app's override when there is one, else its own (see /prompt)" }),
  prompt_overridden: t.Boolean({ description: "Whether system_prompt is an override set with PUT /v1/agents/{agent_id}/prompt" }),
  model: t.Object({ provider: Nullable(t.String()), name: Nullable(t.String()), parameters: t.Record(t.String(), t.Unknown()) }),
  tools: t.Array(AgentTool), approval: t.String(), output_schema: Nullable(t.Record(t.String(), t.Unknown())),
  billing: t.Union([t.Literal("app"), t.Literal("end_user")], { description: "Who pays for the model calls: the app, or each session's end user (BYOS)" }),
  memory: t.Object({ enabled: t.Boolean(), recall_limit: t.Integer() }, { description: "Whether each turn recalls the user's memory (and the agent has remember / recall), and how many entries" }),
  created_at: t.String(), updated_at: t.String(),
});

/** An agent's system prompt: the one it runs with, its own default, and whether an override is set. */
export const AgentPrompt = t.Object({
  agent_id: t.String(), object: t.Literal("agent.prompt"),
  system_prompt: t.String({ description: "The effective prompt: the override when there is one, else the default" }),
  default_system_prompt: t.String({ description: "The agent's own system_prompt (set on create or PATCH)" }),
  overridden: t.Boolean(),
  updated_at: t.String({ description: "When the override or the default last changed" }),
});

export const Session = t.Object({
  id: t.String(), object: t.Literal("session"), agent_id: t.String(), user_id: t.String(), name: t.String(),
  external_ref: Nullable(t.String()), metadata: t.Record(t.String(), t.Unknown()),
  status: t.Union([t.Literal("idle"), t.Literal("processing")]), active_job_id: Nullable(t.String()),
  queued_job_ids: t.Array(t.String()), archived: t.Boolean(), message_count: t.Integer(), asset_count: t.Integer(),
  usage: Usage, credits_spent: CreditsSpent, created_at: t.String(), updated_at: t.String(), last_activity_at: t.String(),
});

export const JobStatus = t.Union(["pending", "processing", "awaiting_approval", "completed", "failed", "cancelled"].map((s) => t.Literal(s)));

export const Job = t.Object({
  id: t.String(), object: t.Literal("job"), kind: t.Union([t.Literal("message"), t.Literal("run")]),
  session_id: Nullable(t.String()), message_id: Nullable(t.String()), agent_id: t.String(), user_id: t.String(),
  status: t.String(), input: t.Unknown(), content: Nullable(t.String()), result: t.Unknown(), error: t.Unknown(),
  approval: t.Unknown(), cancel_requested: t.Boolean(), attempts: t.Integer(), usage: Usage, credits_spent: CreditsSpent,
  created_at: t.String(), started_at: Nullable(t.String()), completed_at: Nullable(t.String()),
  citations: t.Array(Citation, { description: "What the reply cites: the memory entries the agent was given while it answered, and the message's files it read" }),
});

export const Message = t.Object({
  id: t.String(), role: t.String(), content: t.String(), job_id: t.String(), status: t.String(), attachments: t.Array(t.Unknown()),
  tool_calls: t.Array(t.Unknown()), assets: t.Array(t.Unknown()), result: t.Unknown(), error: t.Unknown(), created_at: t.String(),
});

export const Asset = t.Object({
  asset_label: t.String(), kind: t.String(),
  url: Nullable(t.String({ description: "The asset's URL; null for an asset that is a file of the app" })),
  file_id: Nullable(t.String({ description: "The app's file the asset is (see the files API); null for a URL" })),
  source_tool: t.String(), model: Nullable(t.String()),
  prompt: Nullable(t.String()), job_id: Nullable(t.String()), created_at: t.String(),
});

const Page = <T extends TSchema>(item: T) => t.Object({ data: t.Array(item), has_more: t.Boolean(), next_cursor: Nullable(t.String()) });
const Deleted = <K extends string>(object: K) => t.Object({ id: t.String(), object: t.Literal(object), deleted: t.Literal(true) });

/** A message's 202: the turn was accepted (and queued behind the one in flight when `queued`). */
export const MessageAccepted = t.Object({
  job_id: t.String(), message_id: t.String(), session_id: t.String(), status: t.String(), queued: t.Boolean(),
});

/** A message sent with `wait: true` whose turn ended in time. */
export const MessageReply = t.Object({
  ...MessageAccepted.properties,
  reply: Nullable(t.Object({
    content: t.String(), result: t.Unknown(), tool_calls: t.Array(t.Unknown()), assets: t.Array(t.String()),
    citations: t.Optional(t.Array(Citation, { description: "What the reply cites: the memory entries the agent was given and the files it read (absent: none)" })),
  })),
  error: Nullable(Error), usage: Usage, credits_spent: CreditsSpent,
});

export const RunAccepted = t.Object({ id: t.String(), job_id: t.String(), status: t.String() });

export const Run = t.Object({
  id: t.String(), job_id: t.String(), status: t.String(), result: t.Unknown(), content: Nullable(t.String()), error: t.Unknown(),
  usage: Usage, credits_spent: CreditsSpent, created_at: t.String(), completed_at: Nullable(t.String()),
  citations: t.Array(Citation, { description: "What the result cites: the memory entries the agent was given and the files it read" }),
});

/** What approve, reject and cancel answer. */
export const JobAction = t.Object({
  job_id: t.String(),
  status: t.Union([t.Literal("approved"), t.Literal("rejected"), t.Literal("cancelled"), t.Literal("cancelling")]),
});

export const JobEvents = t.Object({
  job_id: t.String(), status: t.String(), error: t.Unknown(), events: t.Array(PublicEventSchema), cursor: t.Integer(),
  done: t.Boolean(), approval_requested: t.Boolean(), approved: Nullable(t.Boolean()),
});

export const SessionEvents = t.Object({ session_id: t.String(), status: t.String(), events: t.Array(PublicEventSchema), cursor: t.Integer() });

export const ErrorEnvelope = t.Object({
  error: t.Object({
    code: t.String(), message: t.String(), details: t.Optional(t.Record(t.String(), t.Unknown())), request_id: t.Optional(t.String()),
  }),
});

export const v1Models = new Elysia({ name: "agentry.v1.models" }).model({
  Agent, AgentList: Page(Agent), AgentDeleted: Deleted("agent"), AgentPrompt,
  Session, SessionList: Page(Session), SessionDeleted: Deleted("session"),
  Message, MessageList: Page(Message), MessageAccepted, MessageReply,
  Asset, AssetList: Page(Asset),
  Job, JobList: Page(Job), JobEvents, JobAction, SessionEvents,
  Run, RunAccepted, PublicEvent: PublicEventSchema, Error: ErrorEnvelope,
});

/**
 * How the cursor polls document their response without checking it at run time: they are the hottest
 * routes, their body is built from typed views, and checking each event against the per-type
 * PublicEvent union cost more than the rest of the poll.
 */
export const documented = (model: string, description: string) => ({
  200: { description, content: { "application/json": { schema: { $ref: `#/components/schemas/${model}` } } } },
});

/** How an SSE route's response is documented: a stream of PublicEvent, one per `data:` line. */
export const SSE_RESPONSE = {
  200: {
    description: "text/event-stream: each event's `id:` is its cursor id and `data:` a PublicEvent; resume with Last-Event-ID",
    content: { "text/event-stream": { schema: { $ref: "#/components/schemas/PublicEvent" } } },
  },
};

/** Verbosity of event streams: minimal (text and lifecycle), standard (plus tools and plans), full (everything). */
export const Verbosity = t.Optional(t.Union([t.Literal("minimal"), t.Literal("standard"), t.Literal("full")], { default: "standard" }));
