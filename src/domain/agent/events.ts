/** The agent stream's events: their schemas and versions (see src/core/eventContract.ts). */
import { Type } from "@sinclair/typebox";
import { eventCodec, type EventsOf } from "../../core/eventContract.ts";
import { JsonObject, Nullable } from "../shared/schemas.ts";

/**
 * An HTTP tool's `headers` keep their names in clear; each value is sealed by the secret box under the
 * agent's app (`sb1:…`, see src/app/agentSecrets.ts), so events never hold one in clear. Events written
 * before that hold plain values: a value that is not sealed is read as plain, and sealed on the agent's
 * next write. Still strings either way, so the schema and versions are unchanged.
 */
const ToolSchema = Type.Union([
  Type.Object({ type: Type.Literal("builtin"), name: Type.String(), requires_approval: Type.Optional(Type.Boolean()) }),
  Type.Object({
    type: Type.Literal("http"), name: Type.String(), description: Type.String(), url: Type.String(), parameters: JsonObject,
    headers: Type.Optional(Type.Record(Type.String(), Type.String())), timeout_ms: Type.Optional(Type.Integer()),
    requires_approval: Type.Optional(Type.Boolean()), estimated_credits: Type.Optional(Type.Number()),
  }),
]);

const ApprovalSchema = Type.Union([Type.Literal("never"), Type.Literal("always"), Type.Literal("tools")]);
const ModelSchema = Type.Object({
  provider: Nullable(Type.String()), name: Nullable(Type.String()), parameters: JsonObject,
  /** One of the app's model connections (absent in agents made before connections). */
  connection: Type.Optional(Nullable(Type.String())),
});

/** Who pays for the agent's model calls: the app (its connection's key), or each session's end user (BYOS). */
const BillingSchema = Type.Union([Type.Literal("app"), Type.Literal("end_user")]);

/** Whether the agent recalls the user's memory into its context and has the remember / recall tools. */
export const AgentMemorySchema = Type.Object({ enabled: Type.Boolean(), recall_limit: Type.Integer({ minimum: 1, maximum: 20 }) });

const SpecFields = {
  name: Type.String(), description: Type.String(), system_prompt: Type.String(), model: ModelSchema,
  tools: Type.Array(ToolSchema), approval: ApprovalSchema, output_schema: Nullable(JsonObject),
  /** Absent in agents made before end-user billing: "app". */
  billing: Type.Optional(BillingSchema),
  /** Absent in agents made before memory: off. */
  memory: Type.Optional(AgentMemorySchema),
};

export const AgentPatchSchema = Type.Object({
  name: Type.Optional(Type.String()), description: Type.Optional(Type.String()), system_prompt: Type.Optional(Type.String()),
  model: Type.Optional(Type.Object({
    provider: Type.Optional(Nullable(Type.String())), name: Type.Optional(Nullable(Type.String())), parameters: Type.Optional(JsonObject),
    connection: Type.Optional(Nullable(Type.String())),
  })),
  tools: Type.Optional(Type.Array(ToolSchema)), approval: Type.Optional(ApprovalSchema), output_schema: Type.Optional(Nullable(JsonObject)),
  billing: Type.Optional(BillingSchema),
  /** Merged field by field into the agent's memory settings. */
  memory: Type.Optional(Type.Partial(AgentMemorySchema)),
});

export const AGENT_EVENTS = {
  AgentCreated: { version: 1, schema: Type.Object({ agent_id: Type.String(), ...SpecFields }) },
  /** Written before updates merged: each field present replaced the spec's whole. Read, no longer written. */
  AgentUpdated: { version: 1, schema: Type.Object({ agent_id: Type.String(), changes: Type.Partial(Type.Object(SpecFields)) }) },
  /** A partial update that merges at every level (see AgentPatch). */
  AgentPatched: { version: 1, schema: Type.Object({ agent_id: Type.String(), patch: AgentPatchSchema }) },
  AgentDeleted: { version: 1, schema: Type.Object({ agent_id: Type.String() }) },
  /** The app's own system prompt for the agent: it wins over the spec's (the default) until reverted. */
  AgentPromptOverridden: { version: 1, schema: Type.Object({ agent_id: Type.String(), system_prompt: Type.String({ minLength: 1 }) }) },
  /** The override is gone: the agent runs with its spec's system prompt again. */
  AgentPromptReverted: { version: 1, schema: Type.Object({ agent_id: Type.String() }) },
};

export type AgentEvent = EventsOf<typeof AGENT_EVENTS>;
export const agentEvents = eventCodec(AGENT_EVENTS);
