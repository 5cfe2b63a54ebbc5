/** Helpers the projections share. */
import type { RecordedEvent } from "../src/eventstore/port.ts";
import { DEFAULT_APP_ID } from "../src/domain/streams.ts";

/** The app (tenant) an event belongs to, from its metadata. */
export const appIdOf = (e: RecordedEvent): string => (typeof e.metadata.app_id === "string" ? e.metadata.app_id : DEFAULT_APP_ID);

/** When the event happened, as its writer recorded it (business time). */
export { occurredAt } from "../src/core/eventContract.ts";

/** The id part of a stream name: `job-job_123` → `job_123`. */
export const streamIdOf = (e: RecordedEvent): string => e.streamId.slice(e.streamId.indexOf("-") + 1);
