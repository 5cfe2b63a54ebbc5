/**
 * A protocol-level EventStoreDB test server: the real gRPC services (ServerFeatures, Streams Read with
 * catch-up subscriptions, Append, BatchAppend, Delete, Tombstone) from the service definitions generated
 * into the `@eventstore/db-client` package, over real HTTP/2. No EventStoreDB server can be installed on
 * these machines, so this is the esdb adapter's only witness; it imports nothing from src/ so that it
 * cannot share a mistake with the code it checks. Its rules come from the KurrentDB server's source
 * (Streams.Append/BatchAppend/Read/Delete, RpcExceptions, IndexWriter.CheckCommit, StorageWriterService,
 * AllReader, the subscription enumerators):
 *
 * - `$all` is a log of records at byte offsets: a record's position is where it starts, commit and
 *   prepare positions are equal for events written by gRPC appends, and positions grow by the record's
 *   size (not by one). Reading from a position that is not where a record starts is refused
 *   ("invalid position"), as the server refuses it.
 * - `$all` reads forwards from a position include the record there; reads backwards from a position
 *   cover the records that end at or before it, so they leave out the record that starts there.
 * - System records live in `$all` too: `$metadata` events of `$$stream` metadata streams, the
 *   `$streamDeleted` tombstone, and the server's own `$`-streams.
 * - Expected revisions follow CheckCommit: idempotent retries by event id, "no_stream" recreating a
 *   soft-deleted stream once, "stream_exists" refused on a soft-deleted stream.
 * - Soft delete writes `{"$tb": long.MaxValue}` to the metadata stream; the next append writes the real
 *   `$tb`. Tombstone writes `$streamDeleted` at event number long.MaxValue. A scavenge drops what these hide.
 * - An append over MaxAppendSize (1 MiB by default, counted as data + metadata + twice the type's
 *   length) is refused with `maximum-append-size-exceeded`.
 * - Catch-up subscriptions confirm, send every historical event, and only then `CaughtUp`; a subscriber
 *   that falls too far behind live events goes back to catching up and is sent `CaughtUp` again.
 *
 * - Operations.StartScavenge (KurrentDB's Grpc/Operations.Scavenge.cs): a thread count of 0 means 1, a
 *   negative start chunk or thread count is refused with InvalidArgument, and the answer carries the
 *   scavenge's id and `Started`. Here the scavenge runs at once, before the answer; every record is
 *   in a completed chunk (the real server leaves the chunk being written alone). With
 *   `deferScavenges(true)` the answer is the same but nothing is removed, as when every record is still
 *   in the chunk being written: tombstoned events stay in `$all` until `scavenge()`.
 *
 * Tests can flip switches: answer the next calls with not-leader, access-denied or unavailable, deny all
 * access, drop open subscriptions, scavenge, restart the listener, write foreign (non-JSON) events, or run
 * a follower node that sends every call to the leader.
 */
import * as grpc from "@grpc/grpc-js";
import { Any } from "google-protobuf/google/protobuf/any_pb.js";
import { Empty as ProtobufEmpty } from "google-protobuf/google/protobuf/empty_pb.js";
import { ServerFeaturesService } from "@eventstore/db-client/generated/serverfeatures_grpc_pb.js";
import { StreamsService } from "@eventstore/db-client/generated/streams_grpc_pb.js";
import { OperationsService } from "@eventstore/db-client/generated/operations_grpc_pb.js";
import operationsPb from "@eventstore/db-client/generated/operations_pb.js";
import serverFeatures from "@eventstore/db-client/generated/serverfeatures_pb.js";
import streamsPb from "@eventstore/db-client/generated/streams_pb.js";
import sharedPb from "@eventstore/db-client/generated/shared_pb.js";
import statusPb from "@eventstore/db-client/generated/status_pb.js";

const { ReadReq, ReadResp, AppendResp, BatchAppendResp, DeleteResp, TombstoneResp } = streamsPb;
type ReadOptions = InstanceType<typeof streamsPb.ReadReq.Options>;
type Identifier = InstanceType<typeof sharedPb.StreamIdentifier>;

/** The server's defaults and markers (ClusterVNodeOptions, EventNumber, ExpectedVersion). */
export const DEFAULT_MAX_APPEND_SIZE = 1_048_576;
const DELETED_STREAM = 9_223_372_036_854_775_807n; // long.MaxValue
const ANY = -2n;
const NO_STREAM = -1n;
const STREAM_EXISTS = -4n;
/** Events per catch-up read, as the server's subscription enumerators page. */
const CATCH_UP_PAGE = 32;
/** A chunk's header: the first record of the log starts after it. */
const CHUNK_HEADER = 128n;
/** grpc status codes the server uses, as numbers in google.rpc.Status. */
const CODE = { INVALID_ARGUMENT: 3, NOT_FOUND: 5, ALREADY_EXISTS: 6, PERMISSION_DENIED: 7 } as const;

// ---------------------------------------------------------------------------------------------------
// Storage: the transaction log, streams, and the server's write rules

interface LogRecord {
  /** Where the record starts in the log: its commit and prepare position. */
  position: bigint;
  /** Where the next record starts. */
  end: bigint;
  stream: string;
  eventNumber: bigint;
  id: string;
  type: string;
  isJson: boolean;
  data: Uint8Array;
  metadata: Uint8Array;
  /** .NET ticks (100 ns) since the Unix epoch. */
  created: bigint;
}

interface StreamState {
  /** Records by event number; holes once a scavenge removed what was hidden. */
  events: Array<LogRecord | undefined>;
  lastEventNumber: bigint;
  tombstone?: LogRecord;
}

export interface ProposedEvent {
  id: string;
  type: string;
  isJson: boolean;
  data: Uint8Array;
  metadata: Uint8Array;
}

type CommitCheck =
  | { decision: "ok"; current: bigint; softDeleted: boolean }
  | { decision: "idempotent"; first: bigint; last: bigint }
  | { decision: "wrong_expected_version"; current: bigint }
  | { decision: "deleted" };

export type AppendOutcome =
  | { kind: "written" | "idempotent"; lastEventNumber: bigint; position: bigint }
  | { kind: "wrong_expected_version"; current: bigint }
  | { kind: "deleted" };

export type DeleteOutcome =
  | { kind: "deleted"; position: bigint }
  | { kind: "wrong_expected_version"; current: bigint }
  | { kind: "stream_deleted" };

export type StreamRead = { kind: "not_found" } | { kind: "deleted" } | { kind: "ok"; records: LogRecord[] };

/** A position in `$all` as the server compares them: commit first, then prepare. */
interface TFPos {
  commit: bigint;
  prepare: bigint;
}
const before = (a: TFPos, b: TFPos) => a.commit < b.commit || (a.commit === b.commit && a.prepare < b.prepare);
const at = (p: bigint): TFPos => ({ commit: p, prepare: p });

const utf8 = (s: string) => new Uint8Array(Buffer.from(s, "utf8"));
const text = (b: Uint8Array) => Buffer.from(b).toString("utf8");

export class EsdbLog {
  readonly records: LogRecord[] = [];
  private readonly streams = new Map<string, StreamState>();
  /** Every position a record ever started at (scavenged ones stay readable from, as chunks map them). */
  private readonly starts = new Set<bigint>([0n]);
  /** Committed event ids, for idempotent retries (the server's committed-events cache). */
  private readonly committed = new Map<string, { stream: string; eventNumber: bigint }>();
  private next = CHUNK_HEADER;
  private waiters = new Set<() => void>();
  version = 0;

  constructor(private readonly clock: () => Date = () => new Date()) {
    this.starts.add(CHUNK_HEADER);
    // A fresh node writes to its own `$`-streams before any client does.
    this.write("$$$scavenges", "$metadata", true, utf8('{"$maxAge":2592000}'), new Uint8Array(), 0n);
    this.write("$stats-127.0.0.1:2113", "$statsCollected", true, utf8('{"proc-startTime":"2024-01-01T00:00:00Z"}'), new Uint8Array(), 0n);
  }

  get head(): bigint {
    return this.next;
  }

  lastEventNumber(stream: string): bigint {
    const s = this.streams.get(stream);
    if (!s) return -1n;
    return s.tombstone ? DELETED_STREAM : s.lastEventNumber;
  }

  /** `$tb` of the stream's latest metadata, if any. */
  truncateBefore(stream: string): bigint | undefined {
    const meta = this.streams.get(`$$${stream}`);
    const latest = meta?.events[Number(meta.lastEventNumber)];
    if (!latest) return undefined;
    // Read as text: long.MaxValue does not survive a trip through a JavaScript number.
    const tb = /"\$tb"\s*:\s*"?(\d+)/.exec(text(latest.data))?.[1];
    return tb === undefined ? undefined : BigInt(tb);
  }

  isSoftDeleted(stream: string): boolean {
    return this.truncateBefore(stream) === DELETED_STREAM;
  }

  isValidStart(position: bigint): boolean {
    return this.starts.has(position) || position === this.next;
  }

  /** IndexWriter.CheckCommit, for the cases a client can reach. */
  private checkCommit(stream: string, expected: bigint, ids: readonly string[]): CommitCheck {
    const current = this.lastEventNumber(stream);
    if (current === DELETED_STREAM) return { decision: "deleted" };
    const softDeleted = this.isSoftDeleted(stream);
    if (expected === STREAM_EXISTS) {
      if (softDeleted) return { decision: "wrong_expected_version", current };
      if (current < 0n && this.lastEventNumber(`$$${stream}`) < 0n) return { decision: "wrong_expected_version", current };
    }
    if (expected === ANY || expected === STREAM_EXISTS) {
      let first: bigint | undefined;
      let last = -1n;
      for (const [i, id] of ids.entries()) {
        const known = this.committed.get(id);
        if (!known || known.stream !== stream) {
          // Some of the batch was written before, some not: the server calls it corrupted idempotency.
          return i === 0 ? { decision: "ok", current, softDeleted } : { decision: "wrong_expected_version", current };
        }
        first ??= known.eventNumber;
        last = known.eventNumber;
      }
      return first === undefined ? { decision: "ok", current, softDeleted } : { decision: "idempotent", first, last };
    }
    if (expected < current) {
      let eventNumber = expected;
      for (const [i, id] of ids.entries()) {
        eventNumber++;
        if (this.streams.get(stream)?.events[Number(eventNumber)]?.id === id) continue;
        if (i > 0) return { decision: "wrong_expected_version", current };
        if (expected === NO_STREAM && softDeleted) return { decision: "ok", current, softDeleted };
        return { decision: "wrong_expected_version", current };
      }
      return { decision: "idempotent", first: expected + 1n, last: eventNumber };
    }
    if (expected > current) return { decision: "wrong_expected_version", current };
    return { decision: "ok", current, softDeleted };
  }

  append(stream: string, expected: bigint, events: readonly ProposedEvent[]): AppendOutcome {
    const check = this.checkCommit(stream, expected, events.map((e) => e.id));
    switch (check.decision) {
      case "deleted":
        return { kind: "deleted" };
      case "wrong_expected_version":
        return { kind: "wrong_expected_version", current: check.current };
      case "idempotent":
        return { kind: "idempotent", lastEventNumber: check.last, position: this.streams.get(stream)!.events[Number(check.last)]!.position };
      case "ok": {
        let last: LogRecord | undefined;
        for (const [i, e] of events.entries()) {
          last = this.write(stream, e.type, e.isJson, e.data, e.metadata, check.current + 1n + BigInt(i), e.id);
        }
        // Writing to a soft-deleted stream recreates it: its metadata now truncates before the new events.
        if (check.softDeleted) this.writeMetadata(stream, { $tb: Number(check.current + 1n) });
        this.notify();
        return { kind: "written", lastEventNumber: last!.eventNumber, position: last!.position };
      }
    }
  }

  /** StorageWriterService's WriteDelete: a tombstone for a hard delete, `$tb: long.MaxValue` for a soft one. */
  delete(stream: string, expected: bigint, hard: boolean): DeleteOutcome {
    const check = this.checkCommit(stream, expected, [crypto.randomUUID()]);
    if (check.decision === "deleted") return { kind: "stream_deleted" };
    if (check.decision === "wrong_expected_version") return { kind: "wrong_expected_version", current: check.current };
    if (check.decision === "idempotent") return { kind: "wrong_expected_version", current: this.lastEventNumber(stream) };
    let record: LogRecord;
    if (hard) {
      record = this.write(stream, "$streamDeleted", false, new Uint8Array(), new Uint8Array(), DELETED_STREAM);
    } else {
      if (this.lastEventNumber(stream) < 0n && this.lastEventNumber(`$$${stream}`) < 0n) {
        return { kind: "wrong_expected_version", current: -1n };
      }
      record = this.writeMetadata(stream, { $tb: DELETED_STREAM.toString() });
    }
    this.notify();
    return { kind: "deleted", position: record.position };
  }

  readStream(stream: string, from: bigint | "start" | "end", backwards: boolean, count: number): StreamRead {
    const s = this.streams.get(stream);
    if (s?.tombstone) return { kind: "deleted" };
    if (!s || s.lastEventNumber < 0n || this.isSoftDeleted(stream)) return { kind: "not_found" };
    const first = this.truncateBefore(stream) ?? 0n;
    const records: LogRecord[] = [];
    if (backwards) {
      let n = from === "end" ? s.lastEventNumber : from === "start" ? 0n : from;
      if (n > s.lastEventNumber) n = s.lastEventNumber;
      for (; n >= first && records.length < count; n--) {
        const r = s.events[Number(n)];
        if (r) records.push(r);
      }
    } else {
      let n = from === "start" ? first : from === "end" ? s.lastEventNumber + 1n : from < first ? first : from;
      for (; n <= s.lastEventNumber && records.length < count; n++) {
        const r = s.events[Number(n)];
        if (r) records.push(r);
      }
    }
    return { kind: "ok", records };
  }

  /** Stream events after `checkpoint` (a revision), for a subscription; "deleted" once tombstoned. */
  streamAfter(stream: string, checkpoint: bigint, max: number): LogRecord[] | "deleted" {
    const s = this.streams.get(stream);
    if (!s) return [];
    if (s.tombstone) return "deleted";
    if (this.isSoftDeleted(stream)) return [];
    const first = this.truncateBefore(stream) ?? 0n;
    const out: LogRecord[] = [];
    for (let n = checkpoint + 1n < first ? first : checkpoint + 1n; n <= s.lastEventNumber && out.length < max; n++) {
      const r = s.events[Number(n)];
      if (r) out.push(r);
    }
    return out;
  }

  tombstoneOf(stream: string): LogRecord | undefined {
    return this.streams.get(stream)?.tombstone;
  }

  /** Records at or after `from`, oldest first. */
  forwardFrom(from: TFPos, max: number): LogRecord[] {
    const out: LogRecord[] = [];
    for (let i = this.indexAtOrAfter(from); i < this.records.length && out.length < max; i++) out.push(this.records[i]!);
    return out;
  }

  /** Records that end at or before `to`, newest first (the server's backward read: exclusive of a record starting at `to`). */
  backwardTo(to: TFPos | "end", max: number): LogRecord[] {
    const out: LogRecord[] = [];
    for (let i = this.records.length - 1; i >= 0 && out.length < max; i--) {
      const r = this.records[i]!;
      if (to !== "end" && before(to, at(r.end))) continue;
      out.push(r);
    }
    return out;
  }

  /** Records strictly after `checkpoint`, for a subscription. */
  after(checkpoint: TFPos | null, max: number): LogRecord[] {
    const out: LogRecord[] = [];
    let i = checkpoint ? this.indexAtOrAfter(checkpoint) : 0;
    if (checkpoint && i < this.records.length && this.records[i]!.position === checkpoint.commit) i++;
    for (; i < this.records.length && out.length < max; i++) out.push(this.records[i]!);
    return out;
  }

  /** Removes what deletes and truncations hide, as a scavenge does; positions of the rest do not move. */
  scavenge(): number {
    const keep = this.records.filter((r) => {
      if (r.stream.startsWith("$$")) {
        const meta = this.streams.get(r.stream)!;
        return r.eventNumber === meta.lastEventNumber;
      }
      const s = this.streams.get(r.stream)!;
      if (s.tombstone) return r === s.tombstone;
      if (this.isSoftDeleted(r.stream)) return false;
      const tb = this.truncateBefore(r.stream);
      return tb === undefined || r.eventNumber >= tb;
    });
    const removed = this.records.length - keep.length;
    const kept = new Set(keep);
    for (const r of this.records) {
      if (kept.has(r)) continue;
      const s = this.streams.get(r.stream)!;
      if (s.events[Number(r.eventNumber)] === r) s.events[Number(r.eventNumber)] = undefined;
      this.committed.delete(r.id);
    }
    this.records.splice(0, this.records.length, ...keep);
    return removed;
  }

  /** Resolves on the next write (or at once if one happened since `sinceVersion`). */
  changed(sinceVersion: number): Promise<void> {
    if (this.version !== sinceVersion) return Promise.resolve();
    return new Promise((resolve) => this.waiters.add(resolve));
  }

  wakeAll(): void {
    const waiters = this.waiters;
    this.waiters = new Set();
    for (const wake of waiters) wake();
  }

  private notify(): void {
    this.version++;
    this.wakeAll();
  }

  /** Writes a record; also used for foreign events a test injects (binary, malformed JSON). */
  write(stream: string, type: string, isJson: boolean, data: Uint8Array, metadata: Uint8Array, eventNumber?: bigint, id: string = crypto.randomUUID()): LogRecord {
    const s = this.streams.get(stream) ?? { events: [], lastEventNumber: -1n };
    this.streams.set(stream, s);
    const number = eventNumber ?? s.lastEventNumber + 1n;
    // A prepare record's size on disk: fixed header, the two names, data and metadata, length prefix and suffix.
    const size = 8n + 81n + BigInt(Buffer.byteLength(stream) + Buffer.byteLength(type) + data.length + metadata.length);
    const record: LogRecord = {
      position: this.next, end: this.next + size, stream, eventNumber: number, id, type, isJson, data, metadata,
      created: BigInt(this.clock().getTime()) * 10_000n,
    };
    this.next = record.end;
    this.starts.add(record.position);
    this.records.push(record);
    if (number === DELETED_STREAM) s.tombstone = record;
    else {
      s.events[Number(number)] = record;
      s.lastEventNumber = number;
      this.committed.set(id, { stream, eventNumber: number });
    }
    if (eventNumber === undefined) this.notify();
    return record;
  }

  private writeMetadata(stream: string, value: Record<string, unknown>): LogRecord {
    // Raw JSON so that long.MaxValue keeps all its digits.
    const json = JSON.stringify(value).replace(`"${DELETED_STREAM}"`, DELETED_STREAM.toString());
    const meta = `$$${stream}`;
    return this.write(meta, "$metadata", true, utf8(json), new Uint8Array(), this.lastEventNumber(meta) + 1n);
  }

  private indexAtOrAfter(from: TFPos): number {
    let lo = 0;
    let hi = this.records.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (before(at(this.records[mid]!.position), from)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

// ---------------------------------------------------------------------------------------------------
// Errors as the server encodes them (RpcExceptions: status plus `exception` metadata; BatchAppend:
// google.rpc.Status with the error packed into `details`)

function rpcError(code: grpc.status, details: string, entries: Record<string, string> = {}): Partial<grpc.ServiceError> {
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(entries)) metadata.set(k, v);
  return { code, details, metadata };
}

const errors = {
  notLeader: (host: string, port: number) =>
    rpcError(grpc.status.NOT_FOUND, "Leader info available", { exception: "not-leader", "leader-endpoint-host": host, "leader-endpoint-port": String(port) }),
  accessDenied: () => rpcError(grpc.status.PERMISSION_DENIED, "Access Denied", { exception: "access-denied" }),
  unavailable: () => rpcError(grpc.status.UNAVAILABLE, "Server Is Not Ready"),
  streamDeleted: (stream: string) =>
    rpcError(grpc.status.FAILED_PRECONDITION, `Event stream '${stream}' is deleted.`, { exception: "stream-deleted", "stream-name": stream }),
  wrongExpectedVersion: (operation: string, stream: string, expected: bigint, actual: bigint) =>
    rpcError(grpc.status.FAILED_PRECONDITION,
      `${operation} failed due to WrongExpectedVersion. Stream: ${stream}, Expected version: ${expected}, Actual version: ${actual}`,
      { exception: "wrong-expected-version", "stream-name": stream, "expected-version": expected.toString(), "actual-version": actual.toString() }),
  maxAppendSize: (max: number) =>
    rpcError(grpc.status.INVALID_ARGUMENT, `Maximum Append Size of ${max} Exceeded.`, { exception: "maximum-append-size-exceeded", "maximum-append-size": String(max) }),
  missingMetadata: (property: string) =>
    rpcError(grpc.status.INVALID_ARGUMENT, `Required Metadata Property '${property}' is missing`, { exception: "missing-required-metadata-property", "required-metadata-properties": "type,content-type" }),
  invalidPosition: () => rpcError(grpc.status.INVALID_ARGUMENT, "Trying to read from an invalid position."),
};

function packedStatus(code: number, message: string, detail: { serializeBinary(): Uint8Array }, typeName: string) {
  const status = new statusPb.Status();
  const any = new Any();
  any.pack(detail.serializeBinary(), typeName);
  status.setCode(code);
  status.setMessage(message);
  status.setDetails(any);
  return status;
}

// ---------------------------------------------------------------------------------------------------
// Switches a test can flip

export type FaultKind = "not-leader" | "access-denied" | "unavailable";

export interface EsdbTestServerOptions {
  /** Advertise BatchAppend (the client then appends through it); otherwise the client uses Append. */
  batchAppend?: boolean;
  /** MaxAppendSize in bytes. */
  maxAppendSize?: number;
  /** Answer every Streams call with access-denied, as a server that refuses the credentials does. */
  accessDenied?: boolean;
  /** Also listen as a follower that answers every Streams call with not-leader, naming this node. */
  follower?: boolean;
  /** Live events a subscriber may lag before the server goes back to catching it up. */
  liveBuffer?: number;
  /** Send FellBehind when a subscriber goes back to catching up (the current server does not). */
  fellBehindMessages?: boolean;
}

export interface EsdbControl {
  /** Answer the next `count` Streams calls with this error. */
  failNext(count: number, kind: FaultKind): void;
  /** Answer the next `count` StartScavenge calls (Operations service) with this error; Streams calls are not affected. */
  failNextScavenge(count: number, kind: FaultKind): void;
  /** StartScavenge answers `Started` but removes nothing (the records are in the chunk being written) until this is turned off or `scavenge()` runs. */
  deferScavenges(on: boolean): void;
  /** Forgets the answers failNext queued and not yet given. */
  clearFaults(): void;
  setAccessDenied(on: boolean): void;
  /** Ends every open subscription, with an error (as on a server fault) or cleanly (as on a shutdown). */
  dropSubscriptions(how: "error" | "end"): number;
  /** Removes records that deletes and truncations hide; returns how many. */
  scavenge(): number;
  /** Writes an event no JSON client wrote: binary, or JSON content that does not parse. */
  writeForeign(stream: string, type: string, contentType: "application/json" | "application/octet-stream", data: string): void;
  /** Closes the listener, cutting every connection, and listens again on the same port with the same data. */
  restart(): Promise<void>;
  /** Streams (and Operations) calls received, by method. */
  calls(): Record<string, number>;
  openSubscriptions(): number;
  /** Reads (not subscriptions) still sending: one a client stopped reading and never cancelled stays here. */
  openReads(): number;
}

export interface EsdbTestServer extends EsdbControl {
  connectionString: string;
  /** Set with `follower: true`: a node that sends every call to the leader. */
  followerConnectionString?: string;
  port: number;
  log: EsdbLog;
  stop(): Promise<void>;
}

interface OpenSubscription {
  call: grpc.ServerWritableStream<unknown, unknown>;
  closed: boolean;
  end(how: "error" | "end"): void;
}

export async function startEsdbTestServer(options: EsdbTestServerOptions = {}): Promise<EsdbTestServer> {
  const log = new EsdbLog();
  const maxAppendSize = options.maxAppendSize ?? DEFAULT_MAX_APPEND_SIZE;
  const liveBuffer = options.liveBuffer ?? 500;
  const faults: FaultKind[] = [];
  let accessDenied = options.accessDenied ?? false;
  const open = new Set<OpenSubscription>();
  const calls: Record<string, number> = {};
  let reads = 0;
  let port = 0;

  const asError = (kind: FaultKind | undefined): Partial<grpc.ServiceError> | undefined =>
    kind === "access-denied" ? errors.accessDenied()
    : kind === "not-leader" ? errors.notLeader("127.0.0.1", port)
    : kind === "unavailable" ? errors.unavailable()
    : undefined;
  /** The error this call must answer with, if a switch says so. */
  const fault = (method: string): Partial<grpc.ServiceError> | undefined => {
    calls[method] = (calls[method] ?? 0) + 1;
    return accessDenied ? errors.accessDenied() : asError(faults.shift());
  };

  const features = {
    getSupportedMethods(_call: unknown, callback: grpc.sendUnaryData<unknown>) {
      const methods = new serverFeatures.SupportedMethods();
      methods.setEventStoreServerVersion("24.10.0");
      const names = ["read", "append", "delete", "tombstone", ...(options.batchAppend === false ? [] : ["batchappend"])];
      methods.setMethodsList(names.map((name) => {
        const m = new serverFeatures.SupportedMethod();
        m.setServiceName("event_store.client.streams.streams");
        m.setMethodName(name);
        return m;
      }));
      callback(null, methods);
    },
  };

  const streams = {
    read(call: grpc.ServerWritableStream<InstanceType<typeof ReadReq>, unknown>) {
      const failure = fault("read");
      if (failure) return void call.emit("error", failure);
      const o = call.request.getOptions()!;
      if (!o.hasSubscription()) reads++;
      const run = o.hasSubscription()
        ? subscribe(log, call, o, open, liveBuffer, options.fellBehindMessages ?? false)
        : read(log, call, o).finally(() => reads--);
      void run.catch((err) => {
        if (!call.cancelled) call.emit("error", rpcError(grpc.status.INTERNAL, (err as Error)?.message ?? String(err)));
      });
    },

    append(call: grpc.ServerReadableStream<any, unknown>, callback: grpc.sendUnaryData<unknown>) {
      let stream = "";
      let expected = ANY;
      let optionsCase: "revision" | "any" | "exists" | "none" = "any";
      let size = 0;
      let failed = false;
      const events: ProposedEvent[] = [];
      const fail = (err: Partial<grpc.ServiceError>) => {
        if (failed) return;
        failed = true;
        callback(err);
      };
      call.on("data", (req: any) => {
        if (failed) return;
        if (req.hasOptions()) {
          const o = req.getOptions();
          stream = streamName(o.getStreamIdentifier());
          [expected, optionsCase] = o.hasRevision() ? [BigInt(o.getRevision()), "revision"] : o.hasNoStream() ? [NO_STREAM, "none"] : o.hasStreamExists() ? [STREAM_EXISTS, "exists"] : [ANY, "any"];
          const failure = fault("append");
          if (failure) fail(failure);
          return;
        }
        const proposed = fromProposed(req.getProposedMessage());
        if (typeof proposed === "string") return fail(errors.missingMetadata(proposed));
        size += proposed.data.length + proposed.metadata.length + proposed.type.length * 2;
        if (size > maxAppendSize) return fail(errors.maxAppendSize(maxAppendSize));
        events.push(proposed);
      });
      call.on("end", () => {
        if (failed) return;
        const outcome = log.append(stream, expected, events);
        const resp = new AppendResp();
        if (outcome.kind === "deleted") return callback(errors.streamDeleted(stream));
        if (outcome.kind === "wrong_expected_version") {
          const wev = new AppendResp.WrongExpectedVersion();
          if (outcome.current < 0n) wev.setCurrentNoStream(new sharedPb.Empty());
          else wev.setCurrentRevision(outcome.current.toString());
          if (optionsCase === "revision") wev.setExpectedRevision(expected.toString());
          else if (optionsCase === "exists") wev.setExpectedStreamExists(new sharedPb.Empty());
          else if (optionsCase === "none") wev.setExpectedNoStream(new sharedPb.Empty());
          else wev.setExpectedAny(new sharedPb.Empty());
          resp.setWrongExpectedVersion(wev);
          return callback(null, resp);
        }
        const success = new AppendResp.Success();
        success.setCurrentRevision(outcome.lastEventNumber.toString());
        const position = new AppendResp.Position();
        position.setCommitPosition(outcome.position.toString());
        position.setPreparePosition(outcome.position.toString());
        success.setPosition(position);
        resp.setSuccess(success);
        callback(null, resp);
      });
    },

    batchAppend(call: grpc.ServerDuplexStream<any, unknown>) {
      calls.batchAppend = (calls.batchAppend ?? 0) + 1;
      const pending = new Map<string, { stream: string; identifier: Identifier; expected: bigint; events: ProposedEvent[]; size: number }>();
      const respond = (correlation: unknown, identifier: Identifier | undefined, fill: (resp: InstanceType<typeof BatchAppendResp>) => void) => {
        const resp = new BatchAppendResp();
        resp.setCorrelationId(correlation as never);
        if (identifier) resp.setStreamIdentifier(identifier);
        fill(resp);
        if (!call.cancelled) call.write(resp);
      };
      call.on("data", (req: any) => {
        const correlation = req.getCorrelationId();
        const key = uuidString(correlation);
        if (req.hasOptions()) {
          const o = req.getOptions();
          const identifier = o.getStreamIdentifier();
          if (accessDenied) {
            return respond(correlation, identifier, (r) => r.setError(packedStatus(CODE.PERMISSION_DENIED, "AccessDenied", new sharedPb.AccessDenied(), "event_store.client.AccessDenied")));
          }
          const expected = o.hasStreamPosition() ? BigInt(o.getStreamPosition()) : o.hasNoStream() ? NO_STREAM : o.hasStreamExists() ? STREAM_EXISTS : ANY;
          pending.set(key, { stream: streamName(identifier), identifier, expected, events: [], size: 0 });
        }
        const batch = pending.get(key);
        if (!batch) return;
        for (const m of req.getProposedMessagesList()) {
          const proposed = fromProposed(m);
          if (typeof proposed === "string") {
            pending.delete(key);
            return respond(correlation, batch.identifier, (r) => {
              const bad = new sharedPb.BadRequest();
              bad.setMessage(`Required Metadata Property '${proposed}' is missing`);
              r.setError(packedStatus(CODE.INVALID_ARGUMENT, "BadRequest", bad, "event_store.client.BadRequest"));
            });
          }
          batch.size += proposed.data.length + proposed.metadata.length + proposed.type.length * 2;
          batch.events.push(proposed);
        }
        if (batch.size > maxAppendSize) {
          pending.delete(key);
          return respond(correlation, batch.identifier, (r) => {
            const detail = new sharedPb.MaximumAppendSizeExceeded();
            detail.setMaxappendsize(maxAppendSize);
            r.setError(packedStatus(CODE.INVALID_ARGUMENT, "MaximumAppendSizeExceeded", detail, "event_store.client.MaximumAppendSizeExceeded"));
          });
        }
        if (!req.getIsFinal()) return;
        pending.delete(key);
        // Each write on the long-lived call counts as a call for the switches. Access denied answers
        // that write; a write the node cannot take (not the leader) fails the whole call, as the
        // server's write callback throws.
        calls.batchAppendWrite = (calls.batchAppendWrite ?? 0) + 1;
        const kind = faults.shift();
        if (kind === "access-denied") {
          return respond(correlation, batch.identifier, (r) => r.setError(packedStatus(CODE.PERMISSION_DENIED, "AccessDenied", new sharedPb.AccessDenied(), "event_store.client.AccessDenied")));
        }
        if (kind) return void call.emit("error", asError(kind));
        const outcome = log.append(batch.stream, batch.expected, batch.events);
        respond(correlation, batch.identifier, (r) => {
          if (outcome.kind === "deleted") {
            const detail = new sharedPb.StreamDeleted();
            detail.setStreamIdentifier(batch.identifier);
            r.setError(packedStatus(CODE.NOT_FOUND, "StreamDeleted", detail, "event_store.client.StreamDeleted"));
          } else if (outcome.kind === "wrong_expected_version") {
            const detail = new sharedPb.WrongExpectedVersion();
            if (outcome.current < 0n) detail.setCurrentNoStream(new ProtobufEmpty());
            else detail.setCurrentStreamRevision(outcome.current.toString());
            if (batch.expected >= 0n) detail.setExpectedStreamPosition(batch.expected.toString());
            else if (batch.expected === NO_STREAM) detail.setExpectedNoStream(new ProtobufEmpty());
            else if (batch.expected === STREAM_EXISTS) detail.setExpectedStreamExists(new ProtobufEmpty());
            else detail.setExpectedAny(new ProtobufEmpty());
            r.setError(packedStatus(CODE.ALREADY_EXISTS, "WrongExpectedVersion", detail, "event_store.client.WrongExpectedVersion"));
          } else {
            const success = new BatchAppendResp.Success();
            success.setCurrentRevision(outcome.lastEventNumber.toString());
            const position = new sharedPb.AllStreamPosition();
            position.setCommitPosition(outcome.position.toString());
            position.setPreparePosition(outcome.position.toString());
            success.setPosition(position);
            r.setSuccess(success);
          }
        });
      });
      call.on("end", () => {
        if (!call.cancelled) call.end();
      });
    },

    delete: removal("delete", log, fault, false),
    tombstone: removal("tombstone", log, fault, true),
  };

  let scavenges = 0;
  let scavengesDeferred = false;
  const scavengeFaults: FaultKind[] = [];
  const operations = {
    startScavenge(call: grpc.ServerUnaryCall<InstanceType<typeof operationsPb.StartScavengeReq>, unknown>, callback: grpc.sendUnaryData<unknown>) {
      calls.startScavenge = (calls.startScavenge ?? 0) + 1;
      const failure = accessDenied ? errors.accessDenied() : asError(scavengeFaults.shift());
      if (failure) return callback(failure);
      const o = call.request.getOptions() ?? new operationsPb.StartScavengeReq.Options();
      const threads = o.getThreadCount() === 0 ? 1 : o.getThreadCount();
      if (o.getStartFromChunk() < 0) return callback(rpcError(grpc.status.INVALID_ARGUMENT, "start_from_chunk must be a non-negative integer"));
      if (threads < 1) return callback(rpcError(grpc.status.INVALID_ARGUMENT, "thread_count must be 1 or above"));
      if (!scavengesDeferred) log.scavenge();
      const resp = new operationsPb.ScavengeResp();
      resp.setScavengeId(`scavenge-${++scavenges}`);
      resp.setScavengeResult(operationsPb.ScavengeResp.ScavengeResult.STARTED);
      callback(null, resp);
    },
  };

  const followerHandlers = {
    read(call: grpc.ServerWritableStream<unknown, unknown>) {
      call.emit("error", errors.notLeader("127.0.0.1", port));
    },
    append(call: grpc.ServerReadableStream<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) {
      call.on("data", () => {});
      call.on("end", () => callback(errors.notLeader("127.0.0.1", port)));
    },
    batchAppend(call: grpc.ServerDuplexStream<unknown, unknown>) {
      // The server refuses the write when it gets it, not when the call opens.
      call.once("data", () => call.emit("error", errors.notLeader("127.0.0.1", port)));
    },
    delete(_call: unknown, callback: grpc.sendUnaryData<unknown>) {
      callback(errors.notLeader("127.0.0.1", port));
    },
    tombstone(_call: unknown, callback: grpc.sendUnaryData<unknown>) {
      callback(errors.notLeader("127.0.0.1", port));
    },
  };

  const listen = async (handlers: object, at = 0) => {
    // The server takes up to 16 MiB messages (TFConsts.EffectiveMaxLogRecordSize), so its own append
    // limit, not gRPC's, is what a large append meets.
    const server = new grpc.Server({ "grpc.max_receive_message_length": 16 * 1024 * 1024 });
    server.addService(ServerFeaturesService as unknown as grpc.ServiceDefinition, features);
    server.addService(StreamsService as unknown as grpc.ServiceDefinition, handlers as grpc.UntypedServiceImplementation);
    if (handlers === streams) server.addService(OperationsService as unknown as grpc.ServiceDefinition, operations as unknown as grpc.UntypedServiceImplementation);
    const bind = () => new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${at}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    // Listening again on the port just closed (a restart) can find it not yet released: retry, bounded.
    for (let attempt = 1; ; attempt++) {
      try {
        return { server, port: await bind() };
      } catch (err) {
        if (at === 0 || attempt >= 40) throw err;
        await Bun.sleep(25);
      }
    }
  };

  let primary = await listen(streams);
  port = primary.port;
  const follower = options.follower ? await listen(followerHandlers) : undefined;

  const dropAll = (how: "error" | "end") => {
    const dropped = open.size;
    for (const sub of [...open]) sub.end(how);
    return dropped;
  };

  return {
    connectionString: `esdb://127.0.0.1:${port}?tls=false`,
    ...(follower ? { followerConnectionString: `esdb://127.0.0.1:${follower.port}?tls=false` } : {}),
    port,
    log,
    failNext(count, kind) {
      for (let i = 0; i < count; i++) faults.push(kind);
    },
    failNextScavenge(count, kind) {
      for (let i = 0; i < count; i++) scavengeFaults.push(kind);
    },
    clearFaults() {
      faults.length = 0;
      scavengeFaults.length = 0;
    },
    deferScavenges(on) {
      scavengesDeferred = on;
    },
    setAccessDenied(on) {
      accessDenied = on;
    },
    dropSubscriptions: dropAll,
    scavenge: () => log.scavenge(),
    writeForeign(stream, type, contentType, data) {
      log.write(stream, type, contentType === "application/json", utf8(data), new Uint8Array());
    },
    async restart() {
      dropAll("error");
      primary.server.forceShutdown();
      primary = await listen(streams, port);
    },
    calls: () => ({ ...calls }),
    openSubscriptions: () => open.size,
    openReads: () => reads,
    async stop() {
      // Open subscriptions and BatchAppend streams would keep a graceful shutdown waiting: cut them.
      dropAll("end");
      primary.server.forceShutdown();
      follower?.server.forceShutdown();
      log.wakeAll();
    },
  };
}

/** A unary Delete or Tombstone handler. */
function removal(method: string, log: EsdbLog, fault: (method: string) => Partial<grpc.ServiceError> | undefined, hard: boolean) {
  const Resp = hard ? TombstoneResp : DeleteResp;
  return (call: grpc.ServerUnaryCall<any, unknown>, callback: grpc.sendUnaryData<unknown>) => {
    const failure = fault(method);
    if (failure) return callback(failure);
    const o = call.request.getOptions();
    const stream = streamName(o.getStreamIdentifier());
    const expected = o.hasRevision() ? BigInt(o.getRevision()) : o.hasNoStream() ? NO_STREAM : o.hasStreamExists() ? STREAM_EXISTS : ANY;
    const outcome = log.delete(stream, expected, hard);
    if (outcome.kind === "stream_deleted") return callback(errors.streamDeleted(stream));
    if (outcome.kind === "wrong_expected_version") {
      return callback(errors.wrongExpectedVersion(hard ? "Tombstone" : "Delete", stream, expected, outcome.current));
    }
    const resp = new Resp();
    const position = new Resp.Position();
    position.setCommitPosition(outcome.position.toString());
    position.setPreparePosition(outcome.position.toString());
    resp.setPosition(position);
    callback(null, resp);
  };
}

// ---------------------------------------------------------------------------------------------------
// Reads and subscriptions

type Matcher = (r: LogRecord) => boolean;

/** The server's `$all` filter: a regex or prefixes, on the stream name or the event type. */
function filterOf(o: ReadOptions): Matcher {
  if (!o.hasFilter()) return () => true;
  const f = o.getFilter()!;
  const expression = f.hasStreamIdentifier() ? f.getStreamIdentifier()! : f.getEventType()!;
  const field = f.hasStreamIdentifier() ? (r: LogRecord) => r.stream : (r: LogRecord) => r.type;
  const regex = expression.getRegex();
  const prefixes = expression.getPrefixList();
  const pattern = regex ? new RegExp(regex) : undefined;
  return (r) => (pattern ? pattern.test(field(r)) : prefixes.some((p) => field(r).startsWith(p)));
}

function positionOf(o: InstanceType<typeof streamsPb.ReadReq.Options.AllOptions>): TFPos | "start" | "end" {
  if (o.hasPosition()) {
    const p = o.getPosition()!;
    return { commit: BigInt(p.getCommitPosition()), prepare: BigInt(p.getPreparePosition()) };
  }
  return o.hasEnd() ? "end" : "start";
}

/** Writes with backpressure: waits for 'drain' when grpc-js's buffer is full (or the call goes away). */
function send(call: grpc.ServerWritableStream<unknown, unknown>, message: unknown): Promise<void> {
  if (call.cancelled) return Promise.resolve();
  if (call.write(message)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      call.off("drain", done);
      call.off("cancelled", done);
      call.off("close", done);
      resolve();
    };
    call.once("drain", done);
    call.once("cancelled", done);
    call.once("close", done);
  });
}

async function read(log: EsdbLog, call: grpc.ServerWritableStream<InstanceType<typeof ReadReq>, unknown>, o: ReadOptions) {
  const backwards = o.getReadDirection() === ReadReq.Options.ReadDirection.BACKWARDS;
  const count = Number(o.getCount() || "0");
  const stringIds = o.getUuidOption()?.hasString() ?? true;
  if (o.hasStream()) {
    const so = o.getStream()!;
    const stream = streamName(so.getStreamIdentifier());
    const from = so.hasRevision() ? BigInt(so.getRevision()) : so.hasEnd() ? "end" as const : "start" as const;
    const result = log.readStream(stream, from, backwards, count);
    if (result.kind === "deleted") return void call.emit("error", errors.streamDeleted(stream));
    if (result.kind === "not_found") {
      const resp = new ReadResp();
      const nf = new ReadResp.StreamNotFound();
      nf.setStreamIdentifier(identifier(stream));
      resp.setStreamNotFound(nf);
      await send(call, resp);
    } else {
      for (const r of result.records) {
        if (call.cancelled) return;
        await send(call, readEvent(r, stringIds));
      }
    }
    if (!call.cancelled) call.end();
    return;
  }
  const from = positionOf(o.getAll()!);
  if (typeof from === "object" && !log.isValidStart(from.commit)) return void call.emit("error", errors.invalidPosition());
  const matches = filterOf(o);
  // Paged like the server's enumerators, so appends during a long read are not blocked.
  let sent = 0;
  let cursor: TFPos | "start" | "end" = from;
  while (sent < count && !call.cancelled) {
    const page = backwards
      ? log.backwardTo(cursor === "start" ? at(0n) : cursor, CATCH_UP_PAGE)
      : cursor === "end" ? [] : log.forwardFrom(cursor === "start" ? at(0n) : cursor, CATCH_UP_PAGE);
    for (const r of page) {
      if (sent >= count || call.cancelled) break;
      if (matches(r)) {
        await send(call, readEvent(r, stringIds));
        sent++;
      }
    }
    if (page.length < CATCH_UP_PAGE) break;
    const last = page[page.length - 1]!;
    cursor = backwards ? at(last.position) : at(last.end);
  }
  if (!call.cancelled) call.end();
}

/**
 * A catch-up subscription, as the server's enumerators run one: confirm, page through history from the
 * checkpoint until a page comes back short, send CaughtUp, then send live events as they are written. A
 * subscriber that lags more than `liveBuffer` events behind goes back to catching up (and gets CaughtUp
 * again when it has). The checkpoint is exclusive: the event at it is not sent again.
 */
async function subscribe(
  log: EsdbLog, call: grpc.ServerWritableStream<InstanceType<typeof ReadReq>, unknown>, o: ReadOptions,
  open: Set<OpenSubscription>, liveBuffer: number, fellBehindMessages: boolean,
) {
  const stringIds = o.getUuidOption()?.hasString() ?? true;
  const matches = filterOf(o);
  const filtered = o.hasFilter();
  const sub: OpenSubscription = {
    call, closed: false,
    end(how) {
      if (sub.closed) return;
      sub.closed = true;
      open.delete(sub);
      if (call.cancelled) return;
      if (how === "error") call.emit("error", errors.unavailable());
      else call.end();
      log.wakeAll();
    },
  };
  const stop = () => {
    sub.closed = true;
    open.delete(sub);
    log.wakeAll();
  };
  call.on("cancelled", stop);
  call.on("close", stop);
  open.add(sub);

  // What to read next, and the checkpoint after which events are sent.
  let next: (max: number) => LogRecord[] | "deleted";
  let advance: (r: LogRecord) => void;
  if (o.hasStream()) {
    const so = o.getStream()!;
    const stream = streamName(so.getStreamIdentifier());
    let checkpoint = so.hasRevision() ? BigInt(so.getRevision()) : so.hasEnd() ? log.lastEventNumber(stream) : -1n;
    next = (max) => log.streamAfter(stream, checkpoint, max);
    advance = (r) => void (checkpoint = r.eventNumber);
    // A tombstone is sent to stream subscribers before the stream-deleted error.
    const tombstoned = () => log.tombstoneOf(stream);
    const confirmation = new ReadResp();
    const c = new ReadResp.SubscriptionConfirmation();
    c.setSubscriptionId(crypto.randomUUID());
    confirmation.setConfirmation(c);
    await send(call, confirmation);
    await run(async (live) => {
      const page = next(CATCH_UP_PAGE);
      if (page === "deleted") {
        const tombstone = tombstoned();
        if (live && tombstone) await send(call, readEvent(tombstone, stringIds));
        if (!call.cancelled) call.emit("error", errors.streamDeleted(stream));
        sub.closed = true;
        open.delete(sub);
        return "stop";
      }
      for (const r of page) {
        if (sub.closed) return "stop";
        await send(call, readEvent(r, stringIds));
        advance(r);
      }
      return page.length;
    });
    return;
  }

  const from = positionOf(o.getAll()!);
  if (typeof from === "object" && !log.isValidStart(from.commit)) {
    stop();
    return void call.emit("error", errors.invalidPosition());
  }
  let checkpoint: TFPos | null = from === "start" ? null : from === "end" ? at(log.records.at(-1)?.position ?? 0n) : from;
  const confirmation = new ReadResp();
  const c = new ReadResp.SubscriptionConfirmation();
  c.setSubscriptionId(crypto.randomUUID());
  confirmation.setConfirmation(c);
  await send(call, confirmation);
  await run(async () => {
    const page = log.after(checkpoint, CATCH_UP_PAGE);
    for (const r of page) {
      if (sub.closed) return "stop";
      if (matches(r)) await send(call, readEvent(r, stringIds));
      checkpoint = at(r.position);
    }
    if (filtered && page.length > 0 && checkpoint) {
      const resp = new ReadResp();
      const cp = new ReadResp.Checkpoint();
      cp.setCommitPosition(checkpoint.commit.toString());
      cp.setPreparePosition(checkpoint.prepare.toString());
      resp.setCheckpoint(cp);
      await send(call, resp);
    }
    return page.length;
  });

  /**
   * The catch-up / live state machine around one step that sends what follows the checkpoint (at most a
   * page) and returns how many records it covered, or "stop".
   */
  async function run(step: (live: boolean) => Promise<number | "stop">) {
    for (;;) {
      // Catching up: until a page comes back short, history is still being sent.
      for (;;) {
        if (sub.closed) return;
        const covered = await step(false);
        if (covered === "stop") return;
        if (covered < CATCH_UP_PAGE) break;
      }
      if (sub.closed) return;
      const caughtUp = new ReadResp();
      caughtUp.setCaughtUp(new ReadResp.CaughtUp());
      await send(call, caughtUp);
      // Live: wait for writes and send them, unless the subscriber has fallen too far behind.
      let behind = false;
      while (!behind) {
        const seen = log.version;
        let covered = 0;
        for (;;) {
          if (sub.closed) return;
          const n = await step(true);
          if (n === "stop") return;
          covered += n;
          if (covered > liveBuffer) {
            behind = true;
            break;
          }
          if (n < CATCH_UP_PAGE) break;
        }
        if (behind) break;
        if (sub.closed) return;
        await log.changed(seen);
      }
      if (fellBehindMessages && !sub.closed) {
        const fell = new ReadResp();
        fell.setFellBehind(new ReadResp.FellBehind());
        await send(call, fell);
      }
    }
  }
}

function readEvent(r: LogRecord, stringIds: boolean) {
  const e = new ReadResp.ReadEvent.RecordedEvent();
  e.setId(uuid(r.id, stringIds));
  e.setStreamIdentifier(identifier(r.stream));
  e.setStreamRevision(r.eventNumber.toString());
  e.setPreparePosition(r.position.toString());
  e.setCommitPosition(r.position.toString());
  const meta = e.getMetadataMap();
  meta.set("type", r.type);
  meta.set("content-type", r.isJson ? "application/json" : "application/octet-stream");
  meta.set("created", r.created.toString());
  e.setData(r.data);
  e.setCustomMetadata(r.metadata);
  const event = new ReadResp.ReadEvent();
  event.setEvent(e);
  event.setCommitPosition(r.position.toString());
  const resp = new ReadResp();
  resp.setEvent(event);
  return resp;
}

/** A proposed message as stored, or the name of the required metadata property it lacks. */
function fromProposed(m: any): ProposedEvent | string {
  const meta = m.getMetadataMap();
  const type = meta.get("type") as string | undefined;
  const contentType = meta.get("content-type") as string | undefined;
  if (type === undefined) return "type";
  if (contentType === undefined) return "content-type";
  return {
    id: uuidString(m.getId()),
    type,
    isJson: contentType === "application/json",
    data: m.getData_asU8(),
    metadata: m.getCustomMetadata_asU8(),
  };
}

function streamName(id: Identifier | undefined): string {
  return text(id?.getStreamName_asU8() ?? new Uint8Array());
}

function identifier(stream: string): Identifier {
  const id = new sharedPb.StreamIdentifier();
  id.setStreamName(utf8(stream));
  return id;
}

function uuid(value: string, asString: boolean) {
  const id = new sharedPb.UUID();
  if (asString) {
    id.setString(value);
    return id;
  }
  const hex = value.replaceAll("-", "");
  const structured = new sharedPb.UUID.Structured();
  structured.setMostSignificantBits(BigInt.asIntN(64, BigInt(`0x${hex.slice(0, 16)}`)).toString());
  structured.setLeastSignificantBits(BigInt.asIntN(64, BigInt(`0x${hex.slice(16)}`)).toString());
  id.setStructured(structured);
  return id;
}

function uuidString(id: InstanceType<typeof sharedPb.UUID> | undefined): string {
  if (!id) return "";
  if (id.hasString()) return id.getString();
  const s = id.getStructured()!;
  const hex = (v: string) => BigInt.asUintN(64, BigInt(v)).toString(16).padStart(16, "0");
  const h = hex(s.getMostSignificantBits()) + hex(s.getLeastSignificantBits());
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// ---------------------------------------------------------------------------------------------------
// Its own process

/** argv flags for the spawned process, and the options they stand for. */
function argvOf(options: EsdbTestServerOptions): string[] {
  return [
    ...(options.batchAppend === false ? ["--no-batch-append"] : []),
    ...(options.maxAppendSize !== undefined ? [`--max-append-size=${options.maxAppendSize}`] : []),
    ...(options.accessDenied ? ["--access-denied"] : []),
    ...(options.liveBuffer !== undefined ? [`--live-buffer=${options.liveBuffer}`] : []),
  ];
}

function optionsOf(argv: readonly string[]): EsdbTestServerOptions {
  const value = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
  return {
    batchAppend: !argv.includes("--no-batch-append"),
    accessDenied: argv.includes("--access-denied"),
    ...(value("max-append-size") ? { maxAppendSize: Number(value("max-append-size")) } : {}),
    ...(value("live-buffer") ? { liveBuffer: Number(value("live-buffer")) } : {}),
  };
}

/**
 * Run as its own process (`bun test/support/esdbTestServer.ts [flags]`): prints the connection string on
 * its first line and serves until killed, like a real server would. Each line on stdin is a command
 * (`{"id": 1, "op": "failNext", "args": [2, "not-leader"]}`), answered by one JSON line on stdout.
 */
if (import.meta.main) {
  const server = await startEsdbTestServer(optionsOf(process.argv.slice(2)));
  console.log(server.connectionString);
  const stop = () => void server.stop().then(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  const ops: Record<string, (...args: any[]) => unknown> = {
    failNext: server.failNext, failNextScavenge: server.failNextScavenge, deferScavenges: server.deferScavenges, clearFaults: server.clearFaults, setAccessDenied: server.setAccessDenied, dropSubscriptions: server.dropSubscriptions,
    scavenge: server.scavenge, writeForeign: server.writeForeign, restart: server.restart, calls: server.calls,
    openSubscriptions: server.openSubscriptions, openReads: server.openReads,
  };
  let buffered = "";
  process.stdin.on("data", (chunk) => {
    buffered += chunk.toString();
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      if (!line.trim()) continue;
      const { id, op, args } = JSON.parse(line) as { id: number; op: string; args: unknown[] };
      void Promise.resolve()
        .then(() => ops[op]!(...(args ?? [])))
        .then((result) => console.log(JSON.stringify({ id, result: result ?? null })), (err) => console.log(JSON.stringify({ id, error: String(err) })));
    }
  });
}

export interface SpawnedEsdbTestServer {
  connectionString: string;
  /** Flips a switch in the server process (see EsdbControl). */
  control(op: keyof EsdbControl, ...args: unknown[]): Promise<unknown>;
  stop(): Promise<void>;
}

/** Starts the test server in a child process and resolves with its connection string. */
export async function spawnEsdbTestServer(options: EsdbTestServerOptions = {}): Promise<SpawnedEsdbTestServer> {
  const child = Bun.spawn(["bun", import.meta.path, ...argvOf(options)], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  const lines: string[] = [];
  const waiting: Array<() => void> = [];
  let exited = false;
  void (async () => {
    const decoder = new TextDecoder();
    let partial = "";
    for await (const chunk of child.stdout) {
      partial += decoder.decode(chunk, { stream: true });
      let newline: number;
      while ((newline = partial.indexOf("\n")) >= 0) {
        lines.push(partial.slice(0, newline).trim());
        partial = partial.slice(newline + 1);
      }
      for (const wake of waiting.splice(0)) wake();
    }
    exited = true;
    for (const wake of waiting.splice(0)) wake();
  })();
  const nextLine = async (): Promise<string> => {
    while (lines.length === 0) {
      if (exited) throw new Error("the EventStoreDB test server exited");
      await new Promise<void>((resolve) => waiting.push(resolve));
    }
    return lines.shift()!;
  };
  const connectionString = await nextLine().catch(() => {
    throw new Error("the EventStoreDB test server exited before it was ready");
  });
  let ids = 0;
  let commands = Promise.resolve<unknown>(undefined);
  return {
    connectionString,
    control(op, ...args) {
      // One command at a time, so each answer is the next line.
      const run = commands.then(async () => {
        const id = ++ids;
        child.stdin.write(`${JSON.stringify({ id, op, args })}\n`);
        child.stdin.flush();
        const answer = JSON.parse(await nextLine()) as { id: number; result?: unknown; error?: string };
        if (answer.error) throw new Error(answer.error);
        return answer.result;
      });
      commands = run.catch(() => undefined);
      return run;
    },
    async stop() {
      child.kill("SIGTERM");
      const done = await Promise.race([child.exited.then(() => true), Bun.sleep(3000).then(() => false)]);
      if (!done) {
        child.kill("SIGKILL");
        await child.exited;
      }
    },
  };
}
