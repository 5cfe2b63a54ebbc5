/**
 * The EventStoreDB adapter, on the official gRPC client (`@eventstore/db-client`, pinned to an exact
 * version: test/contract/esdb.test.ts checks the assumptions the pin stands for). Vendor errors are
 * translated into ours here, at the boundary, and nowhere else.
 *
 * Positions: our port's global position is EventStoreDB's commit position. Events written by gRPC
 * appends commit themselves, so their commit and prepare positions are equal, and reads and
 * subscriptions from a position pass it as both. Positions are byte offsets in the server's log: they
 * are compared, never computed (a read from anywhere but the start of a record is refused). The server
 * reads `$all` backwards from a position exclusively (it takes the records that end at or before it);
 * the port's start is inclusive, so the event at the position is read forwards first.
 *
 * Correlation and causation ids travel in the event's JSON metadata under EventStoreDB's conventional
 * `$correlationId` / `$causationId` keys.
 */
import {
  BACKWARDS, END, ErrorType, EventStoreDBClient, FORWARDS, START, eventTypeFilter, excludeSystemEvents, jsonEvent,
  streamNameFilter, type Filter, type JSONEventType, type ResolvedEvent, type StreamingRead,
} from "@eventstore/db-client";
import type { Channel } from "@grpc/grpc-js";
import { OperationsClient } from "@eventstore/db-client/generated/operations_grpc_pb.js";
import { ScavengeResp, StartScavengeReq } from "@eventstore/db-client/generated/operations_pb.js";
import { toJson, validateAppend, validateStreamName } from "../appendRules.ts";
import { chainBodyJson, chainLink, chainOf, CHAIN_KEY, GENESIS, metadataWithoutChain } from "../chain.ts";
import {
  AppendTooLargeError, InvalidEventError, StoreAccessDeniedError, StoreUnavailableError, StreamDeletedError,
  StreamNotFoundError, WrongExpectedVersionError,
} from "../errors.ts";
import { matchesFilter } from "../filter.ts";
import type {
  AllFilter, AppendOptions, AppendResult, DeleteResult, EraseResult, EraseTarget, EventData, EventMetadata, EventStore, ExpectedRevision,
  ReadAllOptions, ReadStreamOptions, RecordedEvent, SubscribeToAllOptions, SubscribeToStreamOptions, Subscription,
} from "../port.ts";
import { BufferedSubscription } from "../subscription.ts";
import { IDEMPOTENCY_WINDOW } from "./memory.ts";

/**
 * Attempts for an operation a node answers with not-leader. The client has already pointed its channel
 * at the leader the error names, so a retry goes there; the bound keeps an election from spinning us.
 */
const NOT_LEADER_ATTEMPTS = 5;
/**
 * Consecutive failed resubscriptions (about 1.3 s of backoff) before a subscription gives up with
 * unavailable; its consumer then resubscribes on its own, slower schedule.
 */
const RESUBSCRIBE_ATTEMPTS = 6;

/**
 * Attempts for an `any` or `stream_exists` append that lost a race: it is made on the exact revision its
 * chain links to, and another writer got there first. Each round one of the racers wins.
 */
const RACE_ATTEMPTS = 100;

const backoff = (attempt: number) => Bun.sleep(Math.min(25 * 2 ** (attempt - 1), 500));

/** What the client's subscribeToStream / subscribeToAll return: a Node readable of resolved events. */
type ClientSubscription = AsyncIterable<ResolvedEvent> & {
  on(event: "caughtUp", listener: () => void): unknown;
  unsubscribe(): Promise<void>;
};

export interface EsdbEventStoreOptions {
  connectionString: string;
}

export class EsdbEventStore implements EventStore {
  readonly kind = "esdb";
  private readonly client: EventStoreDBClient;
  /**
   * A connection of its own for the short reads appends make to find the previous event's chain: on
   * the main connection, a subscriber that stopped reading holds the flow-control window every call
   * there shares, and an append would wait behind it.
   */
  private readonly chainReader: EventStoreDBClient;
  private readonly subscriptions = new Set<Subscription>();

  constructor(options: EsdbEventStoreOptions) {
    this.client = EventStoreDBClient.connectionString(options.connectionString);
    this.chainReader = EventStoreDBClient.connectionString(ownConnection(options.connectionString));
  }

  /**
   * The last chain this process wrote or read per stream, so that an append on the revision its caller
   * just read (the repository's usual case) links without a read. Bounded; only a hint, checked by the
   * server through the exact expected revision every chained append carries.
   */
  private readonly tails = new Map<string, { revision: bigint; chain: string }>();

  /**
   * The hash chain is computed here, client-side: each append links to the stream's previous event, so
   * it is made with that event's exact revision (read before, or known from the cache) and an append
   * that raced with another is decided again on the new tail. The caller's expectation is checked
   * first, as the server would.
   */
  async appendToStream(stream: string, events: readonly EventData[], options: AppendOptions = {}): Promise<AppendResult> {
    const expected = options.expectedRevision ?? "any";
    validateAppend(stream, events, expected);
    const bodies = events.map((e) => chainBodyJson(stream, e.id, e.type, toJson(e.data, "Event data"), e.metadata));
    const ids = new Set(events.map((e) => e.id));
    let hint: bigint | undefined; // the stream's last revision, from a refusal, when nothing of it is visible
    for (let attempt = 1; ; attempt++) {
      let prev: string;
      let appendExpected: ExpectedRevision = expected;
      if (expected === "no_stream") prev = GENESIS;
      else if (typeof expected === "bigint") prev = await this.chainAt(stream, expected);
      else {
        const tail = await this.tail(stream);
        if (!tail && expected === "stream_exists") throw new WrongExpectedVersionError(stream, expected, "no_stream");
        // A retry of an append whose events are among the newest: the server recognises its ids (or
        // refuses a batch that only partly matches), as it does for every `any` append.
        if (tail?.ids.some((id) => ids.has(id))) appendExpected = "any";
        else appendExpected = tail?.revision ?? hint ?? "no_stream";
        prev = tail?.chain ?? GENESIS;
      }
      let chain = prev;
      const proposed = events.map((e, i) => {
        chain = chainLink(chain, bodies[i]!);
        const metadata = { ...toEsdbMetadata(metadataWithoutChain(e.metadata)), [CHAIN_KEY]: chain };
        return jsonEvent<JSONEventType>({ id: e.id, type: e.type, data: e.data as never, metadata });
      });
      try {
        const result = await this.leader(() => this.client.appendToStream(stream, proposed, { expectedRevision: appendExpected }), stream);
        if (!result.position) throw new StoreUnavailableError(`EventStoreDB returned no position for an append to ${stream}`);
        if (appendExpected !== "any") this.remember(stream, result.nextExpectedRevision, chain);
        return { nextExpectedRevision: result.nextExpectedRevision, position: result.position.commit };
      } catch (err) {
        this.tails.delete(stream);
        // Only an append whose revision this adapter chose can have lost a race it should retry.
        if (!(err instanceof WrongExpectedVersionError) || appendExpected === expected || attempt >= RACE_ATTEMPTS) throw err;
        if (typeof err.actual === "bigint") hint = err.actual;
        // Writers racing on one stream: each round one wins; a little jitter spreads the rest out.
        if (attempt > 2) await Bun.sleep(Math.random() * Math.min(attempt, 10));
      }
    }
  }

  private remember(stream: string, revision: bigint, chain: string): void {
    this.tails.delete(stream);
    this.tails.set(stream, { revision, chain });
    if (this.tails.size > 10_000) this.tails.delete(this.tails.keys().next().value!);
  }

  /** The chain of the event at `revision` (GENESIS when it is not there to read, or has none). */
  private async chainAt(stream: string, revision: bigint): Promise<string> {
    const cached = this.tails.get(stream);
    if (cached?.revision === revision) return cached.chain;
    try {
      for await (const resolved of this.read(() => this.chainReader.readStream(stream, { fromRevision: revision, direction: FORWARDS, maxCount: 1 }), stream)) {
        const e = fromResolved(resolved);
        return e?.revision === revision ? (chainOf(e.metadata) ?? GENESIS) : GENESIS;
      }
    } catch (err) {
      if (!(err instanceof StreamNotFoundError)) throw err;
    }
    return GENESIS;
  }

  /**
   * The stream's last visible event (its revision and chain) and the ids of the newest events, as far
   * back as an `any` retry is recognised (IDEMPOTENCY_WINDOW); undefined if none is visible.
   */
  private async tail(stream: string): Promise<{ revision: bigint; chain: string; ids: string[] } | undefined> {
    const ids: string[] = [];
    let revision: bigint | undefined; // the stream's end, records this adapter cannot decode included
    let last: RecordedEvent | undefined;
    try {
      for await (const resolved of this.read(() => this.chainReader.readStream(stream, { fromRevision: END, direction: BACKWARDS, maxCount: IDEMPOTENCY_WINDOW }), stream)) {
        revision ??= resolved.event?.revision;
        const e = fromResolved(resolved);
        if (!e) continue;
        last ??= e;
        ids.push(e.id);
      }
    } catch (err) {
      if (!(err instanceof StreamNotFoundError)) throw err;
    }
    if (revision === undefined) return undefined;
    // A record no JSON client wrote is not part of the chain: link to the newest event that is.
    return { revision, chain: chainOf(last?.metadata) ?? GENESIS, ids };
  }

  async *readStream(stream: string, options: ReadStreamOptions = {}): AsyncIterable<RecordedEvent> {
    validateStreamName(stream);
    const from = options.fromRevision;
    // Backwards from the start, only the first event can be read: read it forwards.
    const firstOnly = from === "start" && options.direction === "backwards";
    const backwards = options.direction === "backwards" && !firstOnly;
    const maxCount = firstOnly ? Math.min(options.maxCount ?? 1, 1) : (options.maxCount ?? Number.MAX_SAFE_INTEGER);
    const fromRevision = typeof from === "bigint" ? from : from === "end" || backwards ? END : START;
    // A read of nothing still says whether the stream is there, as the other stores do.
    let remaining = maxCount;
    const reading = () => this.client.readStream(stream, { fromRevision, direction: backwards ? BACKWARDS : FORWARDS, maxCount: Math.max(1, maxCount) });
    for await (const resolved of this.read(reading, stream)) {
      if (remaining-- <= 0) return;
      const e = fromResolved(resolved);
      if (e) yield e;
    }
  }

  async *readAll(options: ReadAllOptions = {}): AsyncIterable<RecordedEvent> {
    const from = options.fromPosition;
    const backwards = options.direction === "backwards";
    let remaining = options.maxCount ?? Number.MAX_SAFE_INTEGER;
    if (remaining <= 0) return;
    const keep = (e: RecordedEvent | undefined): e is RecordedEvent => !!e && matchesFilter(e.streamId, e.type, options.filter);
    if (backwards && typeof from === "bigint") {
      const atPosition = () => this.client.readAll({ fromPosition: { commit: from, prepare: from }, direction: FORWARDS, maxCount: 1 });
      for await (const resolved of this.read(atPosition)) {
        const e = fromResolved(resolved);
        if (keep(e) && e.position === from) {
          yield e;
          remaining--;
        }
      }
      if (remaining <= 0) return;
    }
    const reading = () => this.client.readAll({
      fromPosition: typeof from === "bigint" ? { commit: from, prepare: from } : from === "end" || (from === undefined && backwards) ? END : START,
      direction: backwards ? BACKWARDS : FORWARDS,
    });
    for await (const resolved of this.read(reading)) {
      const e = fromResolved(resolved);
      if (!keep(e)) continue;
      yield e;
      if (--remaining <= 0) return;
    }
  }

  subscribeToStream(stream: string, options: SubscribeToStreamOptions = {}): Subscription {
    validateStreamName(stream);
    // The last revision received, so that a resubscription starts right after it.
    let after = typeof options.fromRevision === "bigint" ? options.fromRevision : undefined;
    return this.follow(
      () => this.client.subscribeToStream(stream, { fromRevision: after ?? START }),
      (resolved) => {
        const revision = (resolved.link ?? resolved.event)?.revision;
        if (revision !== undefined) after = revision;
      },
      () => true,
      stream,
    );
  }

  subscribeToAll(options: SubscribeToAllOptions = {}): Subscription {
    // The last position received, matching or not, so that a resubscription starts right after it.
    let after = typeof options.fromPosition === "bigint" ? options.fromPosition : undefined;
    const filter = serverFilter(options.filter);
    return this.follow(
      () => this.client.subscribeToAll({ fromPosition: after === undefined ? START : { commit: after, prepare: after }, filter }),
      (resolved) => {
        const position = positionOf(resolved);
        if (position !== undefined) after = position;
      },
      (e) => matchesFilter(e.streamId, e.type, options.filter),
    );
  }

  async deleteStream(stream: string, options: AppendOptions = {}): Promise<DeleteResult> {
    validateStreamName(stream);
    const expected = options.expectedRevision ?? "any";
    // The next event starts the chain again (nothing before it is visible): forget the cached tail.
    this.tails.delete(stream);
    const r = await this.leader(() => this.client.deleteStream(stream, { expectedRevision: deleteExpectation(expected) }), stream, missingOnDelete(expected));
    return r.position ? { position: r.position.commit } : {};
  }

  async tombstoneStream(stream: string, options: AppendOptions = {}): Promise<DeleteResult> {
    validateStreamName(stream);
    const expected = options.expectedRevision ?? "any";
    this.tails.delete(stream);
    const r = await this.leader(() => this.client.tombstoneStream(stream, { expectedRevision: deleteExpectation(expected) }), stream);
    return r.position ? { position: r.position.commit } : {};
  }

  /**
   * Erasure as EventStoreDB's documentation describes it: tombstone each stream (soft-delete one whose
   * name must stay usable), then start a scavenge, which rewrites the node's completed chunks without
   * what the deletes hide. A scavenge is per node and leaves the chunk being written untouched: the
   * operator scavenges the other nodes, and again once the current chunk completes (docs/operations.md).
   * The Node client has no call for it, so the Operations service's StartScavenge is spoken over the
   * client's own channel (its credentials, its node). Starting it needs ops or admin rights; without
   * them the report says the scavenge failed. Until a scavenge has covered their chunk, the tombstoned
   * streams read as deleted but their events stay in `$all`: readers that serve `$all` skip the erased
   * streams themselves (src/app/audit.ts, erasedStreams).
   */
  async eraseStreams(targets: readonly EraseTarget[]): Promise<EraseResult> {
    for (const t of targets) validateStreamName(t.stream);
    const erased: string[] = [];
    const missing: string[] = [];
    for (const t of targets) {
      let exists = false;
      try {
        for await (const _ of this.readStream(t.stream, { direction: "backwards", maxCount: 1 })) exists = true;
      } catch (err) {
        if (!(err instanceof StreamNotFoundError || err instanceof StreamDeletedError)) throw err;
      }
      if (!exists) {
        missing.push(t.stream);
        continue;
      }
      const options = { expectedRevision: t.expectedRevision ?? "any" };
      try {
        if (t.reusable) await this.deleteStream(t.stream, options);
        else await this.tombstoneStream(t.stream, options);
      } catch (err) {
        // Deleted meanwhile by someone else: nothing left to erase.
        if (!(err instanceof StreamNotFoundError || err instanceof StreamDeletedError)) throw err;
        missing.push(t.stream);
        continue;
      }
      erased.push(t.stream);
    }
    if (erased.length === 0) return { erased, missing, reclaim: "none" };
    try {
      const started = await this.startScavenge();
      // One already under way may have passed the chunks these tombstones are in: say so.
      const note = started.result === "started" ? {} : { reclaimError: `a scavenge was already ${started.result === "in_progress" ? "running" : "stopping"} on the node: start another once it ends` };
      return { erased, missing, reclaim: "scavenge_started", scavengeId: started.id, ...note };
    } catch (err) {
      return { erased, missing, reclaim: "scavenge_failed", reclaimError: translateError(err).message };
    }
  }

  /** Operations.StartScavenge on the node the client talks to: one thread, from the first chunk. */
  private async startScavenge(): Promise<{ id: string; result: "started" | "in_progress" | "stopped" }> {
    const req = new StartScavengeReq();
    const options = new StartScavengeReq.Options();
    options.setThreadCount(1);
    options.setStartFromChunk(0);
    req.setOptions(options);
    // `execute` and `callArguments` are the client's own plumbing for its services (protected in its
    // types, pinned with the client's version): the channel, the node, the credentials.
    const client = this.client as unknown as {
      execute<T>(c: typeof OperationsClient, name: string, action: (c: OperationsClient) => Promise<T>): Promise<T>;
      callArguments(options: { requiresLeader?: boolean }): [import("@grpc/grpc-js").Metadata, import("@grpc/grpc-js").CallOptions];
    };
    const resp = await client.execute(OperationsClient, "startScavenge", (ops) => new Promise<ScavengeResp>((resolve, reject) => {
      ops.startScavenge(req, ...client.callArguments({}), (err, r) => (err ? reject(err) : resolve(r)));
    }));
    const result = resp.getScavengeResult();
    return {
      id: resp.getScavengeId(),
      result: result === ScavengeResp.ScavengeResult.STARTED ? "started" : result === ScavengeResp.ScavengeResult.INPROGRESS ? "in_progress" : "stopped",
    };
  }

  async headPosition(): Promise<bigint | null> {
    for await (const e of this.readAll({ direction: "backwards", maxCount: 1 })) return e.position;
    return null;
  }

  /** Called at start-up: refused credentials stop the server here, with a message that says so. */
  async ping(): Promise<void> {
    for await (const _ of this.read(() => this.client.readAll({ direction: BACKWARDS, fromPosition: END, maxCount: 1 }))) break;
  }

  async close(): Promise<void> {
    for (const sub of [...this.subscriptions]) await sub.unsubscribe();
    // dispose() cancels the client's open calls and waits for each to report finished; under Bun a call
    // that had already ended never reports it, so the wait is bounded. Then the channel itself is closed.
    await Promise.race([Promise.all([this.client.dispose(), this.chainReader.dispose()]), Bun.sleep(1000)]);
    await closeChannel(this.client);
    await closeChannel(this.chainReader);
  }

  /** Runs a unary operation, again (bounded) when the node is not the leader; translates what it throws. */
  private async leader<T>(op: () => Promise<T>, stream?: string, translation = translateError): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await op();
      } catch (err) {
        if (isNotLeader(err) && attempt < NOT_LEADER_ATTEMPTS) {
          await backoff(attempt);
          continue;
        }
        throw translation(err, stream);
      }
    }
  }

  /**
   * Iterates a read, again (bounded) when a not-leader answer comes before any event; translates errors.
   * A consumer that stops early gets the call cancelled: left open, the server would go on sending into
   * a stream nobody reads, and that unread data holds the HTTP/2 connection's flow-control window, which
   * every other call on the connection (subscriptions included) shares, until they all stall.
   */
  private async *read(open: () => StreamingRead<ResolvedEvent>, stream?: string): AsyncIterable<ResolvedEvent> {
    for (let attempt = 1; ; attempt++) {
      let received = false;
      let ended = false;
      const reading = open();
      try {
        for await (const resolved of reading) {
          received = true;
          yield resolved;
        }
        ended = true;
        return;
      } catch (err) {
        ended = true;
        if (!received && isNotLeader(err) && attempt < NOT_LEADER_ATTEMPTS) {
          await backoff(attempt);
          continue;
        }
        throw translateError(err, stream);
      } finally {
        if (!ended) await reading.cancel().catch(() => {});
      }
    }
  }

  /**
   * Feeds a server subscription into our buffered subscription, with backpressure. When the server ends
   * or drops it (an error, a restart, a scavenge, a lost connection, a leader change), it subscribes
   * again from the last event received, so consumers see no gap and no duplicate. Only what retrying
   * cannot fix ends it with an error: a deleted stream, refused access, a refused request, or a server
   * that stays away through every attempt.
   */
  private follow(
    open: () => ClientSubscription,
    received: (resolved: ResolvedEvent) => void,
    keep: (e: RecordedEvent) => boolean,
    stream?: string,
  ): Subscription {
    let source: ClientSubscription | undefined;
    const sub: BufferedSubscription = new BufferedSubscription(async () => {
      this.subscriptions.delete(sub);
      await source?.unsubscribe().catch(() => {});
    });
    this.subscriptions.add(sub);
    void (async () => {
      let failures = 0;
      let lastError: unknown;
      while (!sub.isClosed) {
        const current = open();
        source = current;
        // The client emits caughtUp in order with the events it passes on, after the ones before it.
        current.on("caughtUp", () => sub.markCaughtUp());
        try {
          for await (const resolved of current) {
            failures = 0;
            received(resolved);
            const e = fromResolved(resolved);
            if (e && keep(e)) sub.push(e);
            await sub.hasRoom();
            if (sub.isClosed) break;
          }
          lastError = undefined;
        } catch (err) {
          lastError = translateError(err, stream);
          if (sub.isClosed) break;
          if (isFinal(lastError)) {
            sub.fail(lastError);
            break;
          }
        }
        if (sub.isClosed) break;
        await current.unsubscribe().catch(() => {});
        if (++failures > RESUBSCRIBE_ATTEMPTS) {
          const why = lastError instanceof Error ? lastError.message : "the server kept ending the subscription";
          sub.fail(new StoreUnavailableError(`EventStoreDB subscription lost: ${why}`, lastError));
          break;
        }
        await backoff(failures);
      }
      this.subscriptions.delete(sub);
    })();
    return sub;
  }
}

/** Errors a resubscription cannot cure. */
function isFinal(err: unknown): boolean {
  return err instanceof StreamDeletedError || err instanceof StoreAccessDeniedError || err instanceof InvalidEventError;
}

function isNotLeader(err: unknown): boolean {
  return (err as { type?: string })?.type === ErrorType.NOT_LEADER;
}

/** The client's delete calls take no "stream_exists"; "any" on an existing stream means the same there. */
function deleteExpectation(expected: ExpectedRevision): bigint | "any" | "no_stream" {
  return expected === "stream_exists" ? "any" : expected;
}

/**
 * EventStoreDB answers a soft delete of a stream that never existed with wrong-expected-version (actual
 * "no stream"); the port calls that stream-not-found, unless the caller's own expectation is what failed.
 */
function missingOnDelete(expected: ExpectedRevision) {
  return (err: unknown, stream?: string): Error => {
    const translated = translateError(err, stream);
    if (translated instanceof WrongExpectedVersionError && translated.actual === "no_stream" && (expected === "any" || expected === "no_stream")) {
      return new StreamNotFoundError(translated.streamName);
    }
    return translated;
  };
}

/** Server-side filter for a subscription; what it cannot express is re-checked client-side. */
function serverFilter(filter: AllFilter | undefined): Filter {
  if (filter?.streamPrefixes?.length) return streamNameFilter({ prefixes: [...filter.streamPrefixes] });
  if (filter?.eventTypes?.length) {
    const alternatives = filter.eventTypes.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|");
    return eventTypeFilter({ regex: `^(?:${alternatives})$` });
  }
  return excludeSystemEvents();
}

function positionOf(resolved: ResolvedEvent): bigint | undefined {
  return resolved.commitPosition ?? (resolved.link ?? resolved.event)?.position?.commit;
}

/**
 * Our event, or undefined for what the port does not show or the client could not decode: system
 * events and tombstones (`$` types and streams), events that are not JSON, links whose event is gone,
 * and JSON events whose data did not parse. The client hands unparsable JSON back as its raw text,
 * which cannot be told from a JSON string value; nothing this server writes has string data, so a
 * string is taken for the former rather than let one bad event stop a subscription.
 */
function fromResolved(resolved: ResolvedEvent): RecordedEvent | undefined {
  const e = resolved.event;
  if (!e || !e.isJson || typeof e.data === "string" || e.streamId.startsWith("$") || e.type.startsWith("$")) return undefined;
  const position = e.position?.commit ?? resolved.commitPosition;
  if (position === undefined) return undefined;
  return {
    id: e.id, type: e.type, streamId: e.streamId, revision: e.revision, position,
    data: e.data, metadata: fromEsdbMetadata(e.metadata), created: e.created,
  };
}

/**
 * The connection string for a client that must not share the main client's HTTP/2 connection: grpc-js
 * pools connections by address and channel options, so a keep-alive interval 1 ms off the configured
 * one (default 10 s) gives it a connection of its own.
 */
function ownConnection(connectionString: string): string {
  const match = /([?&])keepAliveInterval=(-?\d+)/i.exec(connectionString);
  if (match) {
    const interval = Number(match[2]);
    return connectionString.replace(match[0], `${match[1]}keepAliveInterval=${interval < 0 ? interval : interval + 1}`);
  }
  return `${connectionString}${connectionString.includes("?") ? "&" : "?"}keepAliveInterval=10001`;
}

function toEsdbMetadata(metadata: EventMetadata | undefined): Record<string, unknown> {
  const { correlationId, causationId, ...rest } = metadata ?? {};
  return {
    ...rest,
    ...(correlationId !== undefined ? { $correlationId: correlationId } : {}),
    ...(causationId !== undefined ? { $causationId: causationId } : {}),
  };
}

function fromEsdbMetadata(raw: unknown): EventMetadata {
  if (!raw || typeof raw !== "object" || raw instanceof Uint8Array) return {};
  const { $correlationId, $causationId, ...rest } = raw as Record<string, unknown>;
  return {
    ...rest,
    ...(typeof $correlationId === "string" ? { correlationId: $correlationId } : {}),
    ...(typeof $causationId === "string" ? { causationId: $causationId } : {}),
  };
}

/**
 * The client offers no way to close its gRPC channel; dispose() only cancels calls. Its protected
 * `getChannel` is the one way (pinned version; test/contract/esdb.test.ts fails if it goes away).
 */
async function closeChannel(client: EventStoreDBClient): Promise<void> {
  const getChannel = (client as unknown as { getChannel?: () => Promise<Channel> }).getChannel;
  if (typeof getChannel !== "function") return;
  (await getChannel.call(client)).close();
}

/** EventStoreDB's error metadata encodes "any", "no_stream" and "stream_exists" as negative numbers. */
const WIRE_EXPECTATIONS: Record<string, ExpectedRevision> = { "-1": "no_stream", "-2": "any", "-4": "stream_exists" };

function expectedFromWire(value: ExpectedRevision | undefined): ExpectedRevision {
  if (value === undefined) return "any";
  return typeof value === "bigint" && value < 0n ? (WIRE_EXPECTATIONS[value.toString()] ?? "any") : value;
}

function actualFromWire(value: bigint | "no_stream" | undefined): bigint | "no_stream" {
  return value === undefined || (typeof value === "bigint" && value < 0n) ? "no_stream" : value;
}

/** gRPC's INVALID_ARGUMENT: the server refused the request itself (an invalid position, for one). */
const GRPC_INVALID_ARGUMENT = 3;

/** Maps the client's command errors to ours. */
export function translateError(err: unknown, stream?: string): Error {
  const e = err as {
    type?: string; code?: number; streamName?: string; expectedVersion?: ExpectedRevision; actualVersion?: bigint | "no_stream";
    maxAppendSize?: number; message?: string;
  };
  switch (e?.type) {
    case ErrorType.WRONG_EXPECTED_VERSION:
      return new WrongExpectedVersionError(e.streamName || stream || "", expectedFromWire(e.expectedVersion), actualFromWire(e.actualVersion));
    case ErrorType.STREAM_NOT_FOUND:
      return new StreamNotFoundError(e.streamName || stream || "");
    case ErrorType.STREAM_DELETED:
      return new StreamDeletedError(e.streamName || stream || "");
    case ErrorType.MAXIMUM_APPEND_SIZE_EXCEEDED:
      return new AppendTooLargeError(stream ?? "", e.maxAppendSize ?? 0);
    case ErrorType.ACCESS_DENIED:
      return new StoreAccessDeniedError(
        "EventStoreDB refused the credentials (access denied): check the username and password in " +
        "EVENTSTORE_CONNECTION_STRING, and that the user may read $all and write streams",
        err,
      );
    case ErrorType.INVALID_ARGUMENT:
      return new InvalidEventError(e.message ?? "Invalid argument");
    case ErrorType.UNAVAILABLE:
    case ErrorType.DEADLINE_EXCEEDED:
    case ErrorType.TIMEOUT:
    case ErrorType.NOT_LEADER:
    case ErrorType.CANCELLED:
      return new StoreUnavailableError(`EventStoreDB unavailable: ${e.message ?? e.type}`, err);
    case ErrorType.UNKNOWN:
      if (e.code === GRPC_INVALID_ARGUMENT) return new InvalidEventError(`EventStoreDB refused the request: ${e.message ?? ""}`);
  }
  return err instanceof Error ? err : new Error(String(err));
}
