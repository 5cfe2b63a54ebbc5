/** The session stream's events: their schemas and versions (see src/core/eventContract.ts). */
import { Type } from "@sinclair/typebox";
import { eventCodec, type EventsOf } from "../../core/eventContract.ts";
import { AttachmentSchema, ErrorSchema, JsonObject, Nullable } from "../shared/schemas.ts";
import { SkillRunSchema } from "../skill/events.ts";
import { CitationSchema } from "../shared/citations.ts";
import { clientHistoryDigest } from "./clientHistory.ts";

const AssetKindSchema = Type.Union([Type.Literal("image"), Type.Literal("video"), Type.Literal("audio"), Type.Literal("file")]);

export const ReplySummarySchema = Type.Object({
  content: Type.String(),
  result: Type.Unknown(),
  tool_calls: Type.Array(Type.Object({ call_id: Type.String(), name: Type.String(), args: Type.Unknown(), result: Type.Unknown(), error: Nullable(Type.String()) })),
  assets: Type.Array(Type.String()),
  /** What the reply cites (see JobCompleted); absent when nothing (and in turns before memory). */
  citations: Type.Optional(Type.Array(CitationSchema)),
});

const Empty = Type.Object({});

export const SESSION_EVENTS = {
  SessionStarted: { version: 1, schema: Type.Object({
    session_id: Type.String(), agent_id: Type.String(), user_id: Type.String(), name: Type.String(),
    external_ref: Nullable(Type.String()), metadata: JsonObject,
  }) },
  SessionRenamed: { version: 1, schema: Type.Object({ name: Type.String() }) },
  SessionArchived: { version: 1, schema: Empty },
  SessionUnarchived: { version: 1, schema: Empty },
  SessionDeleted: { version: 1, schema: Empty },
  MessageSent: { version: 1, schema: Type.Object({
    message_id: Type.String(), job_id: Type.String(), content: Type.String(), attachments: Type.Array(AttachmentSchema),
    model: Nullable(Type.String()), context: Nullable(JsonObject),
    /** True when it waits behind the turn in flight. */
    queued: Type.Boolean(),
    /** The skill the message runs (run-skill, or `skill` on a message): absent for a plain message. */
    skill: Type.Optional(SkillRunSchema),
    /**
     * What the surface the message came through keeps of its request for its own answers (the OpenAI
     * surface: `metadata`, `instructions`, `background`, `previous_response_id`), never shown to the
     * model. Absent when there is none (and in messages before it).
     */
    client_data: Type.Optional(JsonObject),
  }) },
  TurnEnded: { version: 1, schema: Type.Object({
    job_id: Type.String(), message_id: Type.String(),
    outcome: Type.Union([Type.Literal("completed"), Type.Literal("failed"), Type.Literal("cancelled")]),
    reply: Nullable(ReplySummarySchema), error: Nullable(ErrorSchema),
  }) },
  // v2 adds asset_id: the registering request's id, so a retried request finds its asset.
  // v3 adds file_id: an asset is a URL or a file of the app (exactly one of the two; url is null for a file).
  AssetRegistered: {
    version: 3,
    schema: Type.Object({
      asset_label: Type.String(), url: Nullable(Type.String()), kind: AssetKindSchema, source_tool: Type.String(),
      prompt: Nullable(Type.String()), model: Nullable(Type.String()), job_id: Nullable(Type.String()), asset_id: Nullable(Type.String()),
      file_id: Nullable(Type.String()),
    }),
    upcast: {
      1: (data: Record<string, unknown>) => ({ ...data, asset_id: null }),
      2: (data: Record<string, unknown>) => ({ ...data, file_id: null }),
    },
  },
  /**
   * The conversation's turns up to `through_message_id` (`turns` of them in all), summarised: later
   * turns show the model this summary instead of those turns (src/jobs/runner/contextWindow.ts).
   * `job_id` is the turn whose context needed it.
   */
  HistorySummarized: { version: 1, schema: Type.Object({
    summary: Type.String(), through_message_id: Type.String(), turns: Type.Integer({ minimum: 1 }), job_id: Type.String(),
  }) },
  /**
   * A client saved its own copy of the conversation (MUAPI's `PATCH /sessions/{id}/messages`), beside
   * the history the session's events already are: it changes nothing the API reads. Auditors see how
   * many messages the client held and the digest of what it sent (src/domain/session/clientHistory.ts).
   * v2 keeps the digest, not the copy: v1 stored the messages whole, which grew the stream with every
   * save and failed past one write's cap.
   */
  ClientHistorySaved: {
    version: 2,
    schema: Type.Object({
      count: Type.Integer({ minimum: 0 }),
      sha256: Type.String({ pattern: "^[0-9a-f]{64}$", description: "SHA-256 (hex) of the messages' canonical JSON" }),
      bytes: Type.Integer({ minimum: 0, description: "UTF-8 bytes of that JSON" }),
    }),
    upcast: { 1: (data: { messages: unknown[] }) => clientHistoryDigest(data.messages) },
  },
};

export type SessionEvent = EventsOf<typeof SESSION_EVENTS>;
export const sessionEvents = eventCodec(SESSION_EVENTS);
