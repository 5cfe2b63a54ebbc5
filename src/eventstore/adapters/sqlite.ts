/**
 * The SQLite adapter (bun:sqlite, WAL): the embedded default. One file holds every stream.
 *
 * Durability: with `synchronous = FULL` (the default) an append that returned has been fsynced to the
 * write-ahead log, so it survives a kill -9 of the process and a power cut; `normal` survives a killed
 * process but not a power cut, and is faster. Several processes may share the file: appends take
 * SQLite's write lock (BEGIN IMMEDIATE, with a busy timeout), positions are assigned inside that lock so
 * they commit in order, and subscriptions re-read on a poll interval to see other processes' appends.
 */
import { Database, type Statement } from "bun:sqlite";
import { preparePrivateFile } from "../../core/privateFiles.ts";
import {
  decideAppend, checkExpected, NEW_STREAM, streamExists, toJson, validateAppend, validateStreamName,
  type StreamState,
} from "../appendRules.ts";
import { CHAIN_KEY, chainLink, chainBodyJson, chainOf, GENESIS, metadataWithoutChain, withChainJson } from "../chain.ts";
import { StreamDeletedError, StreamNotFoundError, StoreUnavailableError } from "../errors.ts";
import type {
  AllFilter, AppendOptions, AppendResult, DeleteResult, EraseResult, EraseTarget, EventData, EventStore, ExpectedRevision, ReadAllOptions,
  ReadStreamOptions, RecordedEvent, SubscribeToAllOptions, SubscribeToStreamOptions, Subscription,
} from "../port.ts";
import type { SignalledStore } from "../appendSignal.ts";
import { ChangeSignal, pollingSubscription } from "../subscription.ts";
import { IDEMPOTENCY_WINDOW } from "./memory.ts";

export type SqliteSynchronous = "full" | "normal";

export interface SqliteEventStoreOptions {
  /** Path of the database file, or ":memory:". */
  path: string;
  synchronous?: SqliteSynchronous;
  /** How often idle subscriptions look for appends made by other processes. */
  pollIntervalMs?: number;
  /** How long a writer waits for another process's write lock before failing. */
  busyTimeoutMs?: number;
  /**
   * Open for reading only (operator commands beside a running server, e.g. `bun run audit verify`):
   * the file must exist; nothing is created or changed, and appends fail.
   */
  readonly?: boolean;
}

/**
 * An append waiting for its group's commit, its data already serialized: data, metadata without its
 * chain, and the text the chain hashes (the chain itself needs the previous event, known only inside
 * the transaction).
 */
interface GroupedAppend {
  stream: string;
  events: ReadonlyArray<{ id: string; type: string }>;
  payloads: ReadonlyArray<readonly [data: string, metadata: string, chainBody: string]>;
  expected: ExpectedRevision;
}

/**
 * What committing one append of a group gave: its result (with the time written, or null when the
 * events were already there: a retried append), or the error that rolled back its savepoint.
 */
type GroupOutcome = { result: AppendResult; created: number | null; metadata: string[] } | { error: unknown };

interface PendingAppend extends GroupedAppend {
  resolve: (result: AppendResult) => void;
  reject: (err: unknown) => void;
}

type EventRow = [position: number, stream: string, revision: number, id: string, type: string, data: string, metadata: string, created: number];

const SCHEMA = `
CREATE TABLE IF NOT EXISTS events (
  position INTEGER PRIMARY KEY,
  stream   TEXT    NOT NULL,
  revision INTEGER NOT NULL,
  id       TEXT    NOT NULL,
  type     TEXT    NOT NULL,
  data     TEXT    NOT NULL,
  metadata TEXT    NOT NULL,
  created  INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_stream ON events(stream, revision);
-- Finds a retried event id in one lookup (idempotent appends with expected revision "any"); auditors
-- also look events up by id.
CREATE INDEX IF NOT EXISTS events_by_id ON events(id);
CREATE TABLE IF NOT EXISTS streams (
  stream          TEXT PRIMARY KEY,
  last_revision   INTEGER NOT NULL,
  truncate_before INTEGER NOT NULL DEFAULT 0,
  tombstoned      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
`;

const COLUMNS = "position, stream, revision, id, type, data, metadata, created";

/**
 * A row that keeps the highest position an erasure freed taken: SQLite gives a new row one more than
 * the largest rowid in the table, so without it the next append would reuse the erased events'
 * positions, and every subscriber already past them would skip it. Never shown: `$` names no stream.
 */
const POSITION_KEEPER = "$erased";

export class SqliteEventStore implements EventStore, SignalledStore {
  readonly kind = "sqlite";
  private readonly db: Database;
  private readonly changes = new ChangeSignal();
  /** The events this process appended last, for the subscriptions that follow right behind. */
  private readonly recent = new RecentAppends(2048, 16 * 1024 * 1024);
  private readonly pollIntervalMs: number;
  private closed = false;
  /** The append transaction, compiled once: bun:sqlite wraps a function per db.transaction() call. */
  private readonly appendTx: ReturnType<typeof this.compileAppendTx>;
  private readonly groupTx: ReturnType<typeof this.compileGroupTx>;
  private readonly stmt: {
    stream: Statement;
    idAt: Statement;
    metadataAt: Statement;
    recentId: Statement;
    insert: Statement;
    upsertStream: Statement;
    truncate: Statement;
    tombstone: Statement;
    head: Statement;
  };

  constructor(options: SqliteEventStoreOptions) {
    if (options.readonly) {
      this.db = new Database(options.path, { readonly: true, strict: true });
      this.db.exec(`PRAGMA busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
    } else {
      preparePrivateFile(options.path);
      this.db = new Database(options.path, { create: true, strict: true });
      // The busy timeout first: switching a new file to WAL takes a lock another process may hold.
      this.db.exec(`PRAGMA busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
      this.db.exec("PRAGMA journal_mode = WAL");
      this.db.exec(`PRAGMA synchronous = ${options.synchronous === "normal" ? "NORMAL" : "FULL"}`);
      this.db.exec(SCHEMA);
    }
    this.pollIntervalMs = options.pollIntervalMs ?? 100;
    this.stmt = {
      stream: this.db.query("SELECT last_revision, truncate_before, tombstoned FROM streams WHERE stream = ?"),
      idAt: this.db.query("SELECT id FROM events WHERE stream = ? AND revision = ?"),
      metadataAt: this.db.query("SELECT metadata FROM events WHERE stream = ? AND revision = ?"),
      recentId: this.db.query("SELECT revision FROM events INDEXED BY events_by_id WHERE id = ?3 AND stream = ?1 AND revision > ?2"),
      insert: this.db.query(`INSERT INTO events (stream, revision, id, type, data, metadata, created) VALUES (?, ?, ?, ?, ?, ?, ?)`),
      upsertStream: this.db.query(
        `INSERT INTO streams (stream, last_revision) VALUES (?, ?)
         ON CONFLICT(stream) DO UPDATE SET last_revision = excluded.last_revision`,
      ),
      truncate: this.db.query("UPDATE streams SET truncate_before = ? WHERE stream = ?"),
      tombstone: this.db.query(
        `INSERT INTO streams (stream, last_revision, tombstoned) VALUES (?, -1, 1)
         ON CONFLICT(stream) DO UPDATE SET tombstoned = 1`,
      ),
      head: this.db.query(`SELECT position FROM events WHERE stream <> '${POSITION_KEEPER}' ORDER BY position DESC LIMIT 1`),
    };
    this.appendTx = this.compileAppendTx();
    this.groupTx = this.compileGroupTx();
  }

  private compileAppendTx() {
    return this.db.transaction(this.appendInTransaction.bind(this));
  }

  /**
   * Group commit: appends that arrive while a commit is under way (or within one event-loop turn) are
   * written in one transaction with one fsync. Each runs in its own savepoint (the append transaction
   * nests as one), so each keeps its own expected-revision check and result and one conflict fails
   * only its own caller. Nobody is answered before the group's COMMIT has returned, which with
   * synchronous=FULL means fsynced: durability is what one append per transaction gave.
   */
  private compileGroupTx() {
    return this.db.transaction((group: readonly GroupedAppend[]) =>
      group.map((append): GroupOutcome => {
        try {
          return this.appendTx(append.stream, append.events, append.payloads, append.expected);
        } catch (err) {
          return { error: err }; // its savepoint was rolled back; the others go on
        }
      }));
  }

  private pending: PendingAppend[] = [];
  private flushScheduled = false;
  /** Transactions committed for appends, and appends committed: groups form when appends > commits. */
  readonly appendStats = { commits: 0, appends: 0 };

  /** What the recent-appends run holds (bounded in events and bytes). */
  get recentHeld(): { events: number; bytes: number } {
    return this.recent.held;
  }

  async appendToStream(stream: string, events: readonly EventData[], options: AppendOptions = {}): Promise<AppendResult> {
    this.ensureOpen();
    const expected = options.expectedRevision ?? "any";
    validateAppend(stream, events, expected);
    const payloads = events.map((e) => {
      const data = toJson(e.data, "Event data");
      return [data, toJson(metadataWithoutChain(e.metadata), "Event metadata"), chainBodyJson(stream, e.id, e.type, data, e.metadata)] as const;
    });
    return new Promise<AppendResult>((resolve, reject) => {
      this.pending.push({ stream, events, payloads, expected, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        // After this turn's I/O: every append issued meanwhile joins the group.
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    const group = this.pending;
    this.pending = [];
    if (group.length === 0) return;
    let outcomes: GroupOutcome[];
    try {
      if (this.closed) throw new StoreUnavailableError("The event store is closed");
      outcomes = this.groupTx.immediate(group);
      this.appendStats.commits++;
    } catch (err) {
      // BEGIN or COMMIT failed (busy, disk, closed): nothing of the group is stored.
      this.tails.clear();
      for (const append of group) append.reject(err instanceof StoreUnavailableError ? err : new StoreUnavailableError("The append could not be committed", err));
      return;
    }
    group.forEach((append, i) => {
      const outcome = outcomes[i]!;
      if ("error" in outcome) append.reject(outcome.error);
      else {
        this.appendStats.appends++;
        if (outcome.created !== null) this.recent.add(append, outcome.metadata, outcome.result, outcome.created);
        append.resolve(outcome.result);
      }
    });
    this.changes.notify();
    for (const listener of this.committed) listener();
  }

  private readonly committed = new Set<() => void>();

  /**
   * The chain of the last event this process appended per stream, so an append links without reading
   * its previous event. Used only when the stream's last revision, read in the append transaction, is
   * that event's (revisions are never reused; another process's append moves it on); cleared when a
   * group's commit fails, since what it holds was then never stored.
   */
  private readonly tails = new Map<string, { revision: number; chain: string }>();

  onCommitted(listener: () => void): () => void {
    this.committed.add(listener);
    return () => this.committed.delete(listener);
  }

  /** Another process appended (see appendSignal.ts): subscriptions read the store now. */
  wakeReaders(): void {
    if (!this.closed) this.changes.notify();
  }

  /** The body of an append; runs inside one BEGIN IMMEDIATE transaction (see appendTx). */
  private appendInTransaction(
    stream: string, events: ReadonlyArray<{ id: string; type: string }>, payloads: GroupedAppend["payloads"], expected: ExpectedRevision,
  ): { result: AppendResult; created: number | null; metadata: string[] } {
    const state = this.streamState(stream);
    const decision = decideAppend(
      stream, state, expected, events.map((e) => e.id),
      (rev) => (this.stmt.idAt.values(stream, Number(rev))[0]?.[0] as string | undefined),
      (id) => {
        const row = this.stmt.recentId.values(stream, Number(state.lastRevision) - IDEMPOTENCY_WINDOW, id)[0];
        return row ? BigInt(row[0] as number) : undefined;
      },
    );
    if (decision.kind === "already_written") {
      const row = this.db.query("SELECT position FROM events WHERE stream = ? AND revision = ?")
        .values(stream, Number(decision.lastRevision))[0]!;
      return { result: { nextExpectedRevision: decision.lastRevision, position: BigInt(row[0] as number) }, created: null, metadata: [] };
    }
    const created = Date.now();
    let revision = Number(decision.firstRevision);
    let position = 0;
    // The previous event of the stream, read under the write lock: whoever appended before, and however
    // (any expected revision, another process, an earlier append of this group), this links to it.
    const cached = this.tails.get(stream);
    let chain = revision - 1 < Number(state.truncateBefore) ? GENESIS
      : cached?.revision === revision - 1 ? cached.chain
      : this.chainAt(stream, revision - 1);
    const written: string[] = [];
    for (const [i, e] of events.entries()) {
      const [data, metadataJson, body] = payloads[i]!;
      chain = chainLink(chain, body);
      const metadata = withChainJson(metadataJson, chain);
      written.push(metadata);
      position = Number(this.stmt.insert.run(stream, revision, e.id, e.type, data, metadata, created).lastInsertRowid);
      revision++;
    }
    this.stmt.upsertStream.run(stream, revision - 1);
    this.tails.delete(stream);
    this.tails.set(stream, { revision: revision - 1, chain });
    if (this.tails.size > 10_000) this.tails.delete(this.tails.keys().next().value!);
    return { result: { nextExpectedRevision: BigInt(revision - 1), position: BigInt(position) }, created, metadata: written };
  }

  /** The chain of the event at a revision (GENESIS if it has none: written before the chain existed). */
  private chainAt(stream: string, revision: number): string {
    const json = this.stmt.metadataAt.values(stream, revision)[0]?.[0] as string | undefined;
    if (json === undefined) return GENESIS;
    // The chain is written as the metadata's last key (withChainJson): read it without a parse.
    if (json.slice(-75, -66) === `"${CHAIN_KEY}":"` && json.endsWith('"}')) return json.slice(-66, -2);
    return chainOf(JSON.parse(json) as Record<string, unknown>) ?? GENESIS;
  }

  async *readStream(stream: string, options: ReadStreamOptions = {}): AsyncIterable<RecordedEvent> {
    this.ensureOpen();
    validateStreamName(stream);
    const state = this.streamState(stream);
    if (state.tombstoned) throw new StreamDeletedError(stream);
    if (!streamExists(state)) throw new StreamNotFoundError(stream);
    const backwards = options.direction === "backwards";
    const floor = Number(state.truncateBefore);
    let remaining = options.maxCount ?? Number.MAX_SAFE_INTEGER;
    const from = options.fromRevision;
    let next =
      typeof from === "bigint" ? Number(from)
      : from === "end" ? (backwards ? Number(state.lastRevision) : Number(state.lastRevision) + 1)
      : from === "start" ? floor
      : backwards ? Number(state.lastRevision) : floor;
    if (backwards && from === "start") remaining = Math.min(remaining, 1);
    const query = backwards
      ? this.db.query(`SELECT ${COLUMNS} FROM events WHERE stream = ? AND revision <= ? AND revision >= ? ORDER BY revision DESC LIMIT ?`)
      : this.db.query(`SELECT ${COLUMNS} FROM events WHERE stream = ? AND revision >= ? AND revision >= ? ORDER BY revision LIMIT ?`);
    const last = Number(state.lastRevision);
    while (remaining > 0) {
      // Past either end there is nothing to read: skip the query (the common case of a cached
      // aggregate checking for events after its revision).
      if (backwards ? next < floor : next > last) return;
      const rows = query.values(stream, next, floor, Math.min(remaining, 1000)) as EventRow[];
      if (rows.length === 0) return;
      for (const row of rows) yield toRecorded(row);
      remaining -= rows.length;
      next = rows[rows.length - 1]![2] + (backwards ? -1 : 1);
    }
  }

  async *readAll(options: ReadAllOptions = {}): AsyncIterable<RecordedEvent> {
    this.ensureOpen();
    const backwards = options.direction === "backwards";
    const from = options.fromPosition;
    let next: number =
      typeof from === "bigint" ? Number(from)
      : from === "end" || backwards ? Number.MAX_SAFE_INTEGER
      : 0;
    let remaining = options.maxCount ?? Number.MAX_SAFE_INTEGER;
    const { sql, params } = this.allQuery(options.filter, backwards ? "<=" : ">=", backwards ? "DESC" : "ASC");
    while (remaining > 0) {
      const rows = sql.values(next, ...params, Math.min(remaining, 1000)) as EventRow[];
      if (rows.length === 0) return;
      for (const row of rows) yield toRecorded(row);
      remaining -= rows.length;
      next = rows[rows.length - 1]![0] + (backwards ? -1 : 1);
    }
  }

  subscribeToStream(stream: string, options: SubscribeToStreamOptions = {}): Subscription {
    this.ensureOpen();
    validateStreamName(stream);
    const start = options.fromRevision === undefined || options.fromRevision === "start" ? -1n : options.fromRevision;
    const page = this.db.query(`SELECT ${COLUMNS} FROM events WHERE stream = ? AND revision > ? AND revision >= ? ORDER BY revision LIMIT ?`);
    return pollingSubscription({
      isClosed: () => this.closed,
      changes: this.changes,
      pollIntervalMs: this.pollIntervalMs,
      cursorOf: (e) => e.revision,
      readPage: (after, max) => {
        if (this.closed) return [];
        const state = this.streamState(stream);
        if (state.tombstoned) throw new StreamDeletedError(stream);
        return (page.values(stream, Number(after), Number(state.truncateBefore), max) as EventRow[]).map(toRecorded);
      },
    }, start);
  }

  subscribeToAll(options: SubscribeToAllOptions = {}): Subscription {
    this.ensureOpen();
    const start = options.fromPosition === undefined || options.fromPosition === "start" ? 0n : options.fromPosition;
    const { sql, params } = this.allQuery(options.filter, ">", "ASC");
    return pollingSubscription({
      isClosed: () => this.closed,
      changes: this.changes,
      pollIntervalMs: this.pollIntervalMs,
      cursorOf: (e) => e.position,
      readPage: (after, max) => {
        if (this.closed) return [];
        const page = (from: bigint, limit: number) => (sql.values(Number(from), ...params, limit) as EventRow[]).map(toRecorded);
        // Just appended here (the usual case for a caught-up subscriber): from memory, parsed once for
        // all; then whatever the store holds past the run (another process's appends).
        const recent = this.recent.after(after, max, options.filter);
        if (!recent) return page(after, max);
        return recent.events.length < max ? [...recent.events, ...page(recent.through, max - recent.events.length)] : recent.events;
      },
    }, start);
  }

  async deleteStream(stream: string, options: AppendOptions = {}): Promise<DeleteResult> {
    this.db.transaction(() => {
      const state = this.stateForDelete(stream, options);
      this.stmt.truncate.run(Number(state.lastRevision) + 1, stream);
    }).immediate();
    return {};
  }

  async tombstoneStream(stream: string, options: AppendOptions = {}): Promise<DeleteResult> {
    this.db.transaction(() => {
      this.stateForDelete(stream, options);
      this.stmt.tombstone.run(stream);
    }).immediate();
    this.changes.notify();
    return {};
  }

  /**
   * Deletes the streams' rows and marks them tombstoned (or truncated, for a reusable name) in one
   * transaction, with `secure_delete` on so the freed space is zeroed; then VACUUM rebuilds the file
   * without the freed pages and a TRUNCATE checkpoint empties the write-ahead log, which still held
   * the pages as they were. Another process reading at that moment can keep the checkpoint from
   * finishing (`reclaimError` says so); the rows are gone from every read regardless.
   */
  async eraseStreams(targets: readonly EraseTarget[]): Promise<EraseResult> {
    this.ensureOpen();
    for (const t of targets) validateStreamName(t.stream);
    const erased: string[] = [];
    const missing: string[] = [];
    const secureDelete = this.db.query("PRAGMA secure_delete").values()[0]?.[0] ?? 0;
    this.db.exec("PRAGMA secure_delete = ON");
    try {
      this.db.transaction(() => {
        const states = targets.map((t) => {
          const state = this.streamState(t.stream);
          if (state.tombstoned || !streamExists(state)) return null;
          checkExpected(t.stream, state, t.expectedRevision ?? "any");
          return state;
        });
        const top = this.db.query("SELECT max(position) FROM events").values()[0]?.[0] as number | null;
        targets.forEach((t, i) => {
          const state = states[i];
          if (!state) return void missing.push(t.stream);
          this.db.query("DELETE FROM events WHERE stream = ?").run(t.stream);
          if (t.reusable) this.stmt.truncate.run(Number(state.lastRevision) + 1, t.stream);
          else this.stmt.tombstone.run(t.stream);
          erased.push(t.stream);
        });
        const left = this.db.query("SELECT max(position) FROM events").values()[0]?.[0] as number | null;
        if (top !== null && (left === null || left < top)) {
          this.db.query("DELETE FROM events WHERE stream = ?").run(POSITION_KEEPER);
          this.db.query("INSERT INTO events (position, stream, revision, id, type, data, metadata, created) VALUES (?, ?, 0, '', ?, 'null', '{}', 0)")
            .run(top, POSITION_KEEPER, POSITION_KEEPER);
        }
      }).immediate();
    } finally {
      this.db.exec(`PRAGMA secure_delete = ${Number(secureDelete) ? "ON" : "OFF"}`);
    }
    // Nothing deleted: nothing to compact (a VACUUM rewrites the whole file, and blocks this process meanwhile).
    if (erased.length === 0) return { erased, missing, reclaim: "none" };
    // What this process kept of them in memory goes too: the recent run would hand them to subscribers.
    this.recent.clear();
    for (const stream of erased) this.tails.delete(stream);
    this.changes.notify();
    let reclaimError: string | undefined;
    try {
      this.db.exec("VACUUM");
      const [busy] = this.db.query("PRAGMA wal_checkpoint(TRUNCATE)").values()[0] as [number, number, number];
      if (busy) reclaimError = "another connection kept the write-ahead log from being truncated; it is on the next checkpoint";
    } catch (err) {
      reclaimError = `the file could not be compacted: ${(err as Error).message}`;
    }
    return { erased, missing, reclaim: "vacuumed", ...(reclaimError ? { reclaimError } : {}) };
  }

  async headPosition(): Promise<bigint | null> {
    this.ensureOpen();
    const value = this.stmt.head.values()[0]?.[0];
    return value === null || value === undefined ? null : BigInt(value as number);
  }

  async ping(): Promise<void> {
    this.ensureOpen();
    this.db.query("SELECT 1").values();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.changes.notify();
    this.db.close(false);
  }

  private stateForDelete(stream: string, options: AppendOptions): StreamState {
    this.ensureOpen();
    validateStreamName(stream);
    const state = this.streamState(stream);
    checkExpected(stream, state, options.expectedRevision ?? "any");
    if (!streamExists(state)) throw new StreamNotFoundError(stream);
    return state;
  }

  private streamState(stream: string): StreamState {
    const row = this.stmt.stream.values(stream)[0] as [number, number, number] | undefined;
    if (!row) return NEW_STREAM;
    return { lastRevision: BigInt(row[0]), truncateBefore: BigInt(row[1]), tombstoned: row[2] === 1 };
  }

  /** A cached statement reading `$all` from a position with a filter, plus the filter's parameters. */
  private allQuery(filter: AllFilter | undefined, op: ">" | ">=" | "<=", order: "ASC" | "DESC") {
    const prefixes = filter?.streamPrefixes ?? [];
    const types = filter?.eventTypes ?? [];
    const conditions = [`position ${op} ?`, `stream <> '${POSITION_KEEPER}'`];
    if (filter?.streamPrefixes) {
      conditions.push(prefixes.length ? `(${prefixes.map(() => "substr(stream, 1, ?) = ?").join(" OR ")})` : "0");
    }
    if (filter?.eventTypes) conditions.push(types.length ? `type IN (${types.map(() => "?").join(", ")})` : "0");
    const text = `SELECT ${COLUMNS} FROM events WHERE ${conditions.join(" AND ")} ORDER BY position ${order} LIMIT ?`;
    const sql = this.db.query(text); // bun:sqlite caches prepared statements by text
    const params: Array<string | number> = [...prefixes.flatMap((p) => [p.length, p]), ...types];
    return { sql, params };
  }

  private ensureOpen(): void {
    if (this.closed) throw new StoreUnavailableError("The event store is closed");
  }
}

function toRecorded(row: EventRow): RecordedEvent {
  return {
    position: BigInt(row[0]),
    streamId: row[1],
    revision: BigInt(row[2]),
    id: row[3],
    type: row[4],
    data: JSON.parse(row[5]),
    metadata: JSON.parse(row[6]),
    created: new Date(row[7]),
  };
}

/**
 * The last events this process appended, gapless by position, in memory. Every `$all` subscription
 * in the process (live feed, projections, turn coordinator) reads the events just appended; serving
 * them from here spares each a store read and a JSON parse, and hands all of them the same objects.
 * A gap (another process appended in between) starts the run again, so what is here is exactly what
 * the store holds at those positions; anything before or after the run is read from the store.
 */
class RecentAppends {
  /**
   * By ascending position, gapless. Each holds its serialized data (not the caller's objects) and is
   * built, JSON parsed, when first read.
   */
  private entries: Array<{
    position: bigint; stream: string; revision: bigint; id: string; type: string; data: string; metadata: string; created: number;
    event?: RecordedEvent;
  }> = [];
  private bytes = 0;

  /** At most `capacity` events and about `maxBytes` of their JSON (a built event counts twice). */
  constructor(private readonly capacity: number, private readonly maxBytes: number) {}

  add(append: GroupedAppend, metadata: readonly string[], result: AppendResult, created: number): void {
    const count = append.events.length;
    const firstPosition = result.position - BigInt(count) + 1n;
    const last = this.entries[this.entries.length - 1];
    if (last && last.position + 1n !== firstPosition) this.clear();
    const firstRevision = result.nextExpectedRevision - BigInt(count) + 1n;
    append.events.forEach(({ id, type }, i) => {
      const data = append.payloads[i]![0];
      const meta = metadata[i]!;
      this.entries.push({ position: firstPosition + BigInt(i), stream: append.stream, revision: firstRevision + BigInt(i), id, type, data, metadata: meta, created });
      this.bytes += 2 * (data.length + meta.length);
    });
    // Oldest first; a run that loses its start is still gapless from what remains.
    let drop = 0;
    while (drop < this.entries.length && (this.entries.length - drop > this.capacity || this.bytes > this.maxBytes)) {
      const gone = this.entries[drop++]!;
      this.bytes -= 2 * (gone.data.length + gone.metadata.length);
    }
    if (drop > 0) this.entries.splice(0, drop);
  }

  clear(): void {
    this.entries = [];
    this.bytes = 0;
  }

  get held(): { events: number; bytes: number } {
    return { events: this.entries.length, bytes: this.bytes };
  }

  /**
   * Up to `max` events after `after` matching `filter`, and the position they account for (`through`:
   * the store may hold more after it), when the run covers `after`; else undefined.
   */
  after(after: bigint, max: number, filter: AllFilter | undefined): { events: RecordedEvent[]; through: bigint } | undefined {
    const first = this.entries[0];
    if (!first || after + 1n < first.position || after >= this.entries[this.entries.length - 1]!.position) return undefined;
    const events: RecordedEvent[] = [];
    let through = after;
    for (let i = Number(after + 1n - first.position); i < this.entries.length && events.length < max; i++) {
      const entry = this.entries[i]!;
      through = entry.position;
      const e = (entry.event ??= {
        position: entry.position, streamId: entry.stream, revision: entry.revision, id: entry.id, type: entry.type,
        data: JSON.parse(entry.data), metadata: JSON.parse(entry.metadata), created: new Date(entry.created),
      });
      if (filter?.streamPrefixes && !filter.streamPrefixes.some((p) => e.streamId.startsWith(p))) continue;
      if (filter?.eventTypes && !filter.eventTypes.includes(e.type)) continue;
      events.push(e);
    }
    return { events, through };
  }
}
