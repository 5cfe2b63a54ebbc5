/**
 * Erasure of an end user (`DELETE /v1/users/{id}?erase=true`): everything the user said, uploaded,
 * had remembered or connected is removed from the event store and the read models, and one
 * `UserErased` event records that it happened, without any of it.
 *
 * 1. Find the user's streams (see Discovery): sessions, jobs (session turns and runs), files (the
 *    user's, and those of the user's sessions), memory entries, the user's credentials, and the
 *    Idempotency-Key records of the user's requests (made for the user, or creating or answering with
 *    one of those resources: an answer may repeat a message or a memory).
 * 2. Cancel the user's unfinished jobs and wait (bounded) for them and their sessions' turns to end,
 *    so no worker or coordinator writes to a stream after it is gone.
 * 3. Erase the streams (EventStore.eraseStreams: SQLite deletes and vacuums, EventStoreDB tombstones
 *    and scavenges), each at the revision it was read at; the credentials stream stays usable (it is
 *    named after the user, who may come back).
 * 4. Look again at what was written meanwhile, and repeat 2–3 for anything new (bounded: ERASE_ROUNDS).
 * 5. Release the erased files' blob references; content no other file has is collected.
 * 6. Append `UserErased` to `erasures-<app>`; every projection drops the rows the erased streams gave.
 *    With nothing to erase, nothing is written and nothing compacted.
 *
 * Streams kept: `blob-<sha256>` (which file ids referenced some content: no content, and the user only
 * hashed, see pseudonym.ts), usage-limit pools (`budget-…`, the user hashed) and the app's own streams.
 * Running it again is safe: what is already gone is reported as such.
 */
import { ConflictError, NotFoundError, UnavailableError } from "../core/errors.ts";
import { OCCURRED_AT_KEY, SCHEMA_VERSION_KEY } from "../core/eventContract.ts";
import { newEventId, newResourceId } from "../core/ids.ts";
import { erasureEvents, type ErasureEvent } from "../domain/erasure/events.ts";
import { TERMINAL } from "../domain/job/job.ts";
import {
  credentialsStream, DEFAULT_APP_ID, erasureStream, fileStream, idOf, categoryOf, jobStream, memoryStream, sessionStream, userCredentialsId,
} from "../domain/streams.ts";
import { chainOf } from "../eventstore/chain.ts";
import { StreamDeletedError, StreamNotFoundError, WrongExpectedVersionError } from "../eventstore/errors.ts";
import type { EraseResult, RecordedEvent } from "../eventstore/port.ts";
import { readYourWrites, type AppContext } from "./context.ts";
import { releaseBlob } from "./files.ts";
import { pseudonymousMeta, userHash } from "./pseudonym.ts";
import type { CommandMetadata } from "./repository.ts";
import { cancelJob } from "./turns.ts";

/** The user's streams, by kind. */
export interface UserStreams {
  sessions: string[];
  jobs: string[];
  files: string[];
  memories: string[];
  credentials: string[];
  idempotency: string[];
}

export interface ErasureSummary {
  object: "user_erasure";
  erasure_id: string | null;
  user_id: string;
  /** The data partition erased in (the app, or its test data). */
  app_id: string;
  erased_at: string;
  counts: ErasedCounts;
  /** Streams removed by this erasure. */
  streams_erased: number;
  reclaim: EraseResult["reclaim"];
  reclaim_error: string | null;
  /** Where the UserErased event is: the audit trail of this erasure. Null when there was nothing to erase. */
  record: { stream: string; position: string } | null;
}

type ErasedCounts = Extract<ErasureEvent, { type: "UserErased" }>["data"]["counts"];

const TURN_SETTLE_ATTEMPTS = 100;
const TURN_SETTLE_INTERVAL_MS = 50;
const ERASE_ATTEMPTS = 3;
/**
 * Rounds of find → settle → erase. Each round after the first looks only at what was written since the
 * previous one looked (a memory added, a session started for the user while the erasure ran); the
 * erasure ends after a round that finds nothing new. A write that lands after the last round survives,
 * as any write made after the erasure would.
 */
const ERASE_ROUNDS = 5;

/** Erases `userId` in the data partition `ctx.appId`. `meta.actor` is who asked. */
export async function eraseUser(ctx: AppContext, userId: string, meta: CommandMetadata): Promise<ErasureSummary> {
  // A read model waiting for its version rebuild is not folded live: an erasure now would leave the
  // user's rows in its old tables and their bytes in freed pages. The management route has no
  // data-plane readiness gate, so both are refused here.
  const waiting = ctx.projections.rebuildingAtStart;
  if (waiting.length) {
    throw new UnavailableError(`Read models are being rebuilt for this version (${waiting.join(", ")}); erase once they are ready`,
      { projections: waiting }, "read_models_rebuilding");
  }
  const appId = ctx.appId;
  const hash = userHash(userId);
  // Nothing this writes (job cancels, blob releases, the record) may name the user in clear.
  const safeMeta: CommandMetadata = {
    ...pseudonymousMeta({ ...meta, appId }), now: meta.now ?? Date.now(),
  };
  const discovery = new Discovery(ctx, appId, userId);
  /** Every stream looked at, as last read. */
  const read = new Map<string, StreamRead>();
  const erased = new Set<string>();
  const results: EraseResult[] = [];
  for (let round = 1; round <= ERASE_ROUNDS; round++) {
    await discovery.next();
    const fresh = discovery.all().filter((s) => !read.has(s));
    if (fresh.length === 0) break;
    await settleJobs(ctx, fresh, safeMeta);
    const { reads, result } = await eraseFound(ctx, fresh);
    for (const [stream, r] of reads) read.set(stream, r);
    for (const stream of result.erased) erased.add(stream);
    if (result.erased.length > 0) results.push(result);
  }
  const streams = discovery.streams();
  forgetCached(ctx, streams);
  const reclaim = results.at(-1)?.reclaim ?? "none";
  const reclaimError = results.map((r) => r.reclaimError).filter((e) => e !== undefined).join("; ") || null;

  // Nothing in the store, and no read-model row left by an earlier, interrupted attempt: no record, no
  // compaction (an erasure of nobody costs one filtered scan and a few indexed queries).
  const remembered = [...read.keys()].some((s) => categoryOf(s) !== "credentials");
  if (erased.size === 0 && !remembered) {
    return {
      object: "user_erasure", erasure_id: null, user_id: userId, app_id: appId, erased_at: new Date(safeMeta.now!).toISOString(),
      counts: { sessions: 0, jobs: 0, files: 0, memories: 0, credentials: 0, idempotency_keys: 0, blobs_collected: 0 },
      streams_erased: 0, reclaim: "none", reclaim_error: null, record: null,
    };
  }

  let blobsCollected = 0;
  if (ctx.files) {
    for (const s of read.values()) {
      if (!s.blob || !erased.has(s.stream)) continue;
      const collected = await releaseBlob(ctx, s.blob, idOf(s.stream), safeMeta, ctx.files.blobs, ctx.logger).catch((err) => {
        // The record still gets written; the blob is left to a later erasure or file removal to collect.
        ctx.logger.warn("could not release an erased file's blob", { file_id: idOf(s.stream), error: err as Error });
        return false;
      });
      if (collected) blobsCollected++;
    }
  }

  const eventTypes: Record<string, number> = {};
  for (const s of read.values()) {
    if (!erased.has(s.stream)) continue;
    for (const [type, n] of Object.entries(s.types)) eventTypes[type] = (eventTypes[type] ?? 0) + n;
  }
  const counts: ErasedCounts = {
    sessions: streams.sessions.length, jobs: streams.jobs.length, files: streams.files.length, memories: streams.memories.length,
    credentials: streams.credentials.filter((s) => erased.has(s)).length, idempotency_keys: streams.idempotency.length,
    blobs_collected: blobsCollected,
  };
  const erasureId = newResourceId("era");
  const event: ErasureEvent = {
    type: "UserErased",
    data: {
      erasure_id: erasureId, app_id: appId, user_hash: hash, requested_by: safeMeta.actor ?? "unknown", requested_at: safeMeta.now!,
      // Every stream the user had, the ones a previous attempt removed included (null revision), so every
      // process's read models drop their rows whichever attempt they saw.
      streams: [...read.values()].map((s) => ({
        stream: s.stream, last_revision: erased.has(s.stream) ? s.lastRevision : null, chain: erased.has(s.stream) ? s.chain : null,
        events: erased.has(s.stream) ? s.events : 0,
      })),
      event_types: eventTypes, counts, reclaim,
    },
  };
  const record = erasureStream(appId);
  const appended = await ctx.store.appendToStream(record, [{
    id: newEventId(), type: event.type, data: event.data,
    metadata: {
      app_id: appId, [OCCURRED_AT_KEY]: safeMeta.now, ...erasureEvents.encode(event),
      ...(safeMeta.actor ? { actor: safeMeta.actor } : {}), ...(safeMeta.correlationId ? { correlationId: safeMeta.correlationId } : {}),
      ...(safeMeta.requestId ? { request_id: safeMeta.requestId } : {}),
    },
  }]);
  // This process's read models drop the rows now; then their file is compacted so the freed pages go.
  if (await readYourWrites(ctx, appended.position)) compactReadModels(ctx);
  ctx.logger.info("erased an end user", {
    app_id: appId, erasure_id: erasureId, streams: erased.size, reclaim, record_position: appended.position.toString(),
    ...(results.some((r) => r.scavengeId) ? { scavenge: results.map((r) => r.scavengeId).filter(Boolean).join(",") } : {}),
    ...(reclaimError ? { reclaim_error: reclaimError } : {}),
  });
  return {
    object: "user_erasure", erasure_id: erasureId, user_id: userId, app_id: appId, erased_at: new Date(safeMeta.now!).toISOString(),
    counts, streams_erased: erased.size, reclaim, reclaim_error: reclaimError,
    record: { stream: record, position: appended.position.toString() },
  };
}

/** Reads the streams and erases those that hold events, each at the revision read; read again on a race. */
async function eraseFound(ctx: AppContext, streams: readonly string[]): Promise<{ reads: Map<string, StreamRead>; result: EraseResult }> {
  for (let attempt = 1; ; attempt++) {
    const reads = await readStreams(ctx, streams);
    const targets = [...reads.values()].filter((s) => s.lastRevision !== null).map((s) => ({
      stream: s.stream, expectedRevision: BigInt(s.lastRevision!), reusable: categoryOf(s.stream) === "credentials",
    }));
    if (targets.length === 0) return { reads, result: { erased: [], missing: [...streams], reclaim: "none" } };
    try {
      return { reads, result: await ctx.store.eraseStreams(targets) };
    } catch (err) {
      // Something was appended since the streams were read (a late turn end): read them again.
      if (!(err instanceof WrongExpectedVersionError) || attempt >= ERASE_ATTEMPTS) throw err;
    }
  }
}

const appOf = (e: RecordedEvent): string => (typeof e.metadata.app_id === "string" ? e.metadata.app_id : DEFAULT_APP_ID);

/** The events whose data names the user a stream was started for. */
const OWNING_EVENTS = ["SessionStarted", "JobQueued", "MemoryAdded", "UploadAuthorized", "FileUploaded", "FileAssignedToSession"];
/** The Idempotency-Key events that say whose request it was: the claim (its resource ids) and the answer. */
const KEY_EVENTS = ["IdempotencyKeyClaimed", "IdempotentResponseRecorded"];

/**
 * Finds the user's streams in the partition, round after round (see ERASE_ROUNDS), from two sources:
 *
 * - The store, through `$all` filtered to the few event types that start a stream for a user (and the
 *   Idempotency-Key events), read only from where the previous round stopped. The read models cannot
 *   replace it: they drop a memory entry, a session or a file when it is deleted, while its stream,
 *   content included, stays in the store for audit; and they may lag a write made a moment ago.
 * - The read models (indexed by user), which also remember streams an earlier, interrupted erasure
 *   already removed from the store, so this one's record lets every process drop their rows.
 */
class Discovery {
  private readonly sessions = new Set<string>();
  private readonly jobs = new Set<string>();
  private readonly files = new Set<string>();
  private readonly memories = new Set<string>();
  private readonly idempotency = new Set<string>();
  private readonly credentials: string;
  private readonly fileSessions: Array<{ stream: string; session: string }> = [];
  /** Each Idempotency-Key record not (yet) the user's: whose request it was (see ownersOf). */
  private readonly keyOwners = new Map<string, Set<string>>();
  private from: bigint | "start" = "start";

  constructor(private readonly ctx: AppContext, private readonly appId: string, private readonly userId: string) {
    this.credentials = credentialsStream(userCredentialsId(appId, userId));
  }

  async next(): Promise<void> {
    const { ctx, appId, userId } = this;
    const head = await ctx.store.headPosition();
    // The read models are queried below: let them see what the scan sees.
    await readYourWrites(ctx, head);
    for await (const e of ctx.store.readAll({ fromPosition: this.from, filter: { eventTypes: OWNING_EVENTS } })) {
      if (head !== null && e.position > head) break;
      const d = e.data as Record<string, unknown> | null;
      if (!d || typeof d !== "object") continue;
      switch (e.type) {
        case "SessionStarted":
          if (d.user_id === userId && appOf(e) === appId) this.sessions.add(e.streamId);
          break;
        case "JobQueued":
          if (d.user_id === userId && appOf(e) === appId) this.jobs.add(e.streamId);
          break;
        case "MemoryAdded":
          if (d.user_id === userId && d.app_id === appId) this.memories.add(e.streamId);
          break;
        case "UploadAuthorized":
        case "FileUploaded":
          if (appOf(e) !== appId) break;
          if (d.user_id === userId) this.files.add(e.streamId);
          else if (typeof d.session_id === "string") this.fileSessions.push({ stream: e.streamId, session: d.session_id });
          break;
        case "FileAssignedToSession":
          // An upload that became a session's (MUAPI registers it as an asset) is that session's file.
          if (appOf(e) === appId && typeof d.session_id === "string") this.fileSessions.push({ stream: e.streamId, session: d.session_id });
          break;
      }
    }
    for await (const e of ctx.store.readAll({ fromPosition: this.from, filter: { streamPrefixes: ["idempotency-"], eventTypes: KEY_EVENTS } })) {
      if (head !== null && e.position > head) break;
      if (appOf(e) !== appId) continue;
      const owners = this.keyOwners.get(e.streamId) ?? new Set<string>();
      ownersOf(e, owners);
      this.keyOwners.set(e.streamId, owners);
    }
    if (head !== null) this.from = head;

    const rows = (sql: string) => ctx.db.query(sql).all(appId, userId) as Array<{ id: string }>;
    for (const r of rows("SELECT id FROM sessions WHERE app_id = ? AND user_id = ?")) this.sessions.add(sessionStream(r.id));
    for (const r of rows("SELECT id FROM jobs WHERE app_id = ? AND user_id = ?")) this.jobs.add(jobStream(r.id));
    for (const r of rows("SELECT id FROM files WHERE app_id = ? AND user_id = ?")) this.files.add(fileStream(r.id));
    for (const r of rows("SELECT id FROM memory_entries WHERE app_id = ? AND user_id = ?")) this.memories.add(memoryStream(r.id));
    // The files and jobs of the user's sessions, whoever made them.
    for (const f of this.fileSessions) if (this.sessions.has(sessionStream(f.session))) this.files.add(f.stream);
    for (const session of this.sessions) {
      const id = idOf(session);
      for (const r of ctx.db.query("SELECT id FROM files WHERE session_id = ?").all(id) as Array<{ id: string }>) this.files.add(fileStream(r.id));
      for (const r of ctx.db.query("SELECT id FROM jobs WHERE session_id = ?").all(id) as Array<{ id: string }>) this.jobs.add(jobStream(r.id));
    }
    // The Idempotency-Key records of the user's requests: made for the user, or creating (or answering
    // with) one of the user's resources. Never a match on free text: another user's memory may read "tea".
    const mine = new Set<string>([`user:${userId}`]);
    for (const s of [...this.sessions, ...this.jobs, ...this.files, ...this.memories]) mine.add(`id:${idOf(s)}`);
    for (const [stream, owners] of this.keyOwners) {
      if ([...owners].some((o) => mine.has(o))) {
        this.idempotency.add(stream);
        this.keyOwners.delete(stream);
      }
    }
  }

  streams(): UserStreams {
    return {
      sessions: [...this.sessions], jobs: [...this.jobs], files: [...this.files], memories: [...this.memories],
      credentials: [this.credentials], idempotency: [...this.idempotency],
    };
  }

  all(): string[] {
    const s = this.streams();
    return [...new Set([...s.sessions, ...s.jobs, ...s.files, ...s.memories, ...s.credentials, ...s.idempotency])];
  }
}

/** Fields of a stored answer that name whose resource it is. */
const ID_FIELDS = new Set(["id", "session_id", "job_id", "file_id", "memory_id"]);

/**
 * Adds to `out` whom an Idempotency-Key event says the request was for: `user:<id>` for the end user it
 * was made for or by (`attributed_user_id`, a `user_id` field of the answer), `id:<id>` for each resource
 * it created (the claim's resource ids) or answered with (an id field of the answer).
 */
function ownersOf(e: RecordedEvent, out: Set<string>): void {
  if (typeof e.metadata.attributed_user_id === "string") out.add(`user:${e.metadata.attributed_user_id}`);
  const d = e.data as Record<string, unknown> | null;
  if (!d || typeof d !== "object") return;
  if (e.type === "IdempotencyKeyClaimed") {
    for (const v of Object.values((d.resource_ids ?? {}) as Record<string, unknown>)) if (typeof v === "string") out.add(`id:${v}`);
    return;
  }
  const walk = (value: unknown, depth: number): void => {
    if (depth > 8 || value === null || typeof value !== "object") return;
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (typeof v === "string") {
        if (k === "user_id") out.add(`user:${v}`);
        else if (ID_FIELDS.has(k)) out.add(`id:${v}`);
      } else walk(v, depth + 1);
    }
  };
  walk(d.body, 0);
}

/**
 * Cancels the user's unfinished jobs, then waits (bounded) until they have ended and their sessions
 * have no turn in flight: a worker or the turn coordinator writing after the erasure would find its
 * stream gone. A job that does not end in time is erased all the same.
 */
async function settleJobs(ctx: AppContext, found: readonly string[], meta: CommandMetadata): Promise<void> {
  const streams = { jobs: found.filter((s) => categoryOf(s) === "job"), sessions: found.filter((s) => categoryOf(s) === "session") };
  const open = async (): Promise<string[]> => {
    const out: string[] = [];
    for (const stream of streams.jobs) {
      const { state } = await ctx.repos.jobs.load(idOf(stream)).catch(() => ({ state: { status: "none" as const } }));
      if (state.status !== "none" && !TERMINAL.has(state.status)) out.push(idOf(stream));
    }
    for (const stream of streams.sessions) {
      const { state } = await ctx.repos.sessions.load(idOf(stream)).catch(() => ({ state: { turns: [] as unknown[] } }));
      if (state.turns.length > 0) out.push(idOf(stream));
    }
    return out;
  };
  let pending = await open();
  if (pending.length === 0) return;
  for (const stream of streams.jobs) {
    await cancelJob(ctx, idOf(stream), "user_erased", meta).catch((err) => {
      if (err instanceof ConflictError || err instanceof NotFoundError || err instanceof StreamDeletedError) return; // ended, or gone
      throw err;
    });
  }
  for (let attempt = 0; attempt < TURN_SETTLE_ATTEMPTS && pending.length > 0; attempt++) {
    await Bun.sleep(TURN_SETTLE_INTERVAL_MS);
    pending = await open();
  }
  if (pending.length > 0) ctx.logger.warn("erasing an end user whose turns did not end in time", { pending: pending.length });
}

interface StreamRead {
  stream: string;
  /** Null when the stream is not there (never written, or already erased). */
  lastRevision: number | null;
  chain: string | null;
  events: number;
  types: Record<string, number>;
  /** For a file holding content: its blob, released after the erasure. */
  blob: string | null;
}

/** Each stream's last revision and chain, its event count per type, and (for a file) its live blob. */
async function readStreams(ctx: AppContext, streams: readonly string[]): Promise<Map<string, StreamRead>> {
  const out = new Map<string, StreamRead>();
  for (const stream of streams) {
    const r: StreamRead = { stream, lastRevision: null, chain: null, events: 0, types: {}, blob: null };
    try {
      for await (const e of ctx.store.readStream(stream)) {
        r.lastRevision = Number(e.revision);
        r.chain = chainOf(e.metadata) ?? null;
        r.events++;
        r.types[e.type] = (r.types[e.type] ?? 0) + 1;
        const d = e.data as { sha256?: unknown };
        if (e.type === "FileUploaded" && typeof d.sha256 === "string") r.blob = d.sha256;
        if (e.type === "FileRemoved") r.blob = null; // its removal already released it
      }
    } catch (err) {
      if (!(err instanceof StreamNotFoundError || err instanceof StreamDeletedError)) throw err;
    }
    out.set(stream, r);
  }
  return out;
}

/** Drops what this process holds in memory of the erased streams (folded states, live tails). */
function forgetCached(ctx: AppContext, streams: UserStreams): void {
  const drop = (list: readonly string[], forget: (id: string) => void) => {
    for (const s of list) {
      forget(idOf(s));
      ctx.tails?.forget(s);
    }
  };
  drop(streams.sessions, (id) => ctx.repos.sessions.forget(id));
  drop(streams.jobs, (id) => ctx.repos.jobs.forget(id));
  drop(streams.files, (id) => ctx.repos.files.forget(id));
  drop(streams.memories, (id) => ctx.repos.memory.forget(id));
  drop(streams.credentials, (id) => ctx.repos.credentials.forget(id));
  drop(streams.idempotency, (id) => ctx.repos.idempotency.forget(id));
}

/**
 * Compacts this process's read-model file after the rows are deleted: VACUUM rewrites it without the
 * freed pages, and a TRUNCATE checkpoint empties its write-ahead log. Best effort: a read model is
 * disposable, and a busy file is compacted by the next erasure or a rebuild.
 */
function compactReadModels(ctx: AppContext): void {
  try {
    ctx.db.exec("VACUUM");
    ctx.db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  } catch (err) {
    ctx.logger.warn("could not compact the read models after an erasure", { error: err as Error });
  }
}
