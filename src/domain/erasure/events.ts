/**
 * The record of erasures: stream `erasures-<app>` (one per data partition). A `UserErased` says who
 * asked, when, and which streams were removed, each with the last revision and chain it had, so an
 * auditor sees what went and can still check an export of it taken before. It names the user only by
 * a hash of their id (the same one the user's credential stream is named by) and carries no content:
 * no message text, file names or memory. Projections drop the rows those streams gave (every process's
 * read models, and a rebuild, which no longer sees the streams, gives the same tables).
 * See src/core/eventContract.ts for versioning, src/app/erasure.ts for the flow.
 */
import { Type } from "@sinclair/typebox";
import { eventCodec, type EventsOf } from "../../core/eventContract.ts";
import { Nullable } from "../shared/schemas.ts";

export const ErasedStreamSchema = Type.Object({
  stream: Type.String(),
  /** The stream's last revision when it was erased; null when it was already gone (a retried erasure). */
  last_revision: Nullable(Type.Integer()),
  /** The chain of that event (src/eventstore/chain.ts); null when unknown. */
  chain: Nullable(Type.String()),
  /** How many events it had (0 when already gone). */
  events: Type.Integer({ minimum: 0 }),
});

export const ERASURE_EVENTS = {
  UserErased: {
    version: 1,
    schema: Type.Object({
      erasure_id: Type.String(),
      /** The data partition (the app, or its test data). */
      app_id: Type.String(),
      /** SHA-256 (hex) of the user id: a pseudonym that lets whoever knows the id find the erasure. */
      user_hash: Type.String({ pattern: "^[0-9a-f]{64}$" }),
      /** Who asked: `key:<id>`, `root:root`, `jwt:<subject>`, … (as events' `actor`). */
      requested_by: Type.String(),
      /** When it was asked (epoch ms). */
      requested_at: Type.Number(),
      /** The streams removed, in no particular order. */
      streams: Type.Array(ErasedStreamSchema),
      /** How many events of each type were removed (the stream catalog subtracts them). */
      event_types: Type.Record(Type.String(), Type.Integer({ minimum: 0 })),
      counts: Type.Object({
        sessions: Type.Integer(), jobs: Type.Integer(), files: Type.Integer(), memories: Type.Integer(),
        credentials: Type.Integer(), idempotency_keys: Type.Integer(), blobs_collected: Type.Integer(),
      }),
      /** How the store reclaimed the space (see EraseResult in src/eventstore/port.ts). */
      reclaim: Type.String(),
    }),
  },
};

export type ErasureEvent = EventsOf<typeof ERASURE_EVENTS>;
export const erasureEvents = eventCodec(ERASURE_EVENTS);
