/**
 * The memory stream's events, stream `memory-<id>` (one stream per entry, see src/domain/streams.ts):
 * an entry is added once and removed at most once; its content never changes, so anything derived
 * from it (the search index, an embedding vector) stays valid for as long as the entry exists.
 * See src/core/eventContract.ts for versioning.
 */
import { Type } from "@sinclair/typebox";
import { eventCodec, type EventsOf } from "../../core/eventContract.ts";
import { JsonObject, Nullable } from "../shared/schemas.ts";

export const MEMORY_EVENTS = {
  /**
   * An entry about an end user (`user_id`) of a data partition (`app_id`: the app, or its test data),
   * optionally kept for one agent (`agent_id`; null: every agent of the app recalls it).
   * `source`: who added it — the API, or an agent's `remember` tool (then `job_id` names the job).
   */
  MemoryAdded: { version: 1, schema: Type.Object({
    memory_id: Type.String(), app_id: Type.String(), user_id: Type.String(), agent_id: Nullable(Type.String()),
    content: Type.String({ minLength: 1 }), metadata: JsonObject,
    source: Type.Union([Type.Literal("api"), Type.Literal("agent")]), job_id: Nullable(Type.String()),
  }) },
  /** The entry is gone from every read and from recall; its events stay for audit. */
  MemoryRemoved: { version: 1, schema: Type.Object({ memory_id: Type.String(), app_id: Type.String(), user_id: Type.String() }) },
};

export type MemoryEvent = EventsOf<typeof MEMORY_EVENTS>;
export const memoryEvents = eventCodec(MEMORY_EVENTS);
