/**
 * The EventStoreDB adapter, on the official gRPC client. Vendor errors are translated into ours here,
 * at the boundary, and nowhere else.
 *
 * Positions: our port's global position is EventStoreDB's commit position; reads and subscriptions
 * from a position pass it as both commit and prepare position, which is exact for events written by
 * gRPC appends (each event is its own commit). Correlation and causation ids travel in the event's JSON
 * metadata under EventStoreDB's conventional `$correlationId` / `$causationId` keys.
 */
import {
  BACKWARDS, END, EventStoreDBClient, FORWARDS, START, excludeSystemEvents, eventTypeFilter, jsonEvent,
  streamNameFilter, ErrorType, type AllStreamResolvedEvent, type ResolvedEvent, type Filter,
  type JSONEventType,
} from "@eventstore/db-client";
import { StreamsClient } from "@eventstore/db-client/generated/streams_grpc_pb.js";
import streamsPb from "@eventstore/db-client/generated/streams_pb.js";
import sharedPb from "@eventstore/db-client/generated/shared_pb.js";
import { convertGrpcEvent } from "@eventstore/db-client/dist/utils/convertGrpcEvent.js";
import { createStreamIdentifier } from "@eventstore/db-client/dist/utils/grpcStreamIdentifier.js";
import { convertToCommandError } from "@eventstore/db-client/dist/utils/CommandError.js";
import type { CallOptions, Channel, Metadata } from "@grpc/grpc-js";
import { toJson, validateAppend, validateStreamName } from "../appendRules.ts";
import {
  InvalidEventError, StoreUnavailableError, StreamDeletedError, StreamNotFoundError, WrongExpectedVersionError,
} from "../errors.ts";
import { matchesFilter } from "../filter.ts";
import type {
  AllFilter, AppendOptions, AppendResult, DeleteResult, EventData, EventMetadata, EventStore, ExpectedRevision,
  ReadAllOptions, ReadStreamOptions, RecordedEvent, SubscribeToAllOptions, SubscribeToStreamOptions, Subscription,
} from "../port.ts";
import { BufferedSubscription } from "../subscription.ts";

/** Events per Streams.Read call when paging through a stream. */
const READ_PAGE = 512;

/**
 * The client's protected call helpers, which its own operations are built on: they give our reads the
 * client's channel, credentials, deadlines and reconnect-on-failure handling.
 */
interface ClientInternals {
  execute<T>(client: typeof StreamsClient, debugName: string, action: (client: InstanceType<typeof StreamsClient>) => Promise<T>): Promise<T>;
  callArguments(options: object, callOptions?: CallOptions): [Metadata, CallOptions];
  getChannel(): Promise<Channel>;
}

export interface EsdbEventStoreOptions {
  connectionString: string;
}

export class EsdbEventStore implements EventStore {
  readonly kind = "esdb";
  private readonly client: EventStoreDBClient;

  constructor(options: EsdbEventStoreOptions) {
    this.client = EventStoreDBClient.connectionString(options.connectionString);
  }

  async appendToStream(stream: string, events: readonly EventData[], options: AppendOptions = {}): Promise<AppendResult> {
    const expected = options.expectedRevision ?? "any";
    validateAppend(stream, events, expected);
    const proposed = events.map((e) => {
      toJson(e.data, "Event data");
      return jsonEvent<JSONEventType>({ id: e.id, type: e.type, data: e.data as never, metadata: toEsdbMetadata(e.metadata) });
    });
    const result = await translate(() => this.client.appendToStream(stream, proposed, { expectedRevision: expected }), stream);
    if (!result.position) throw new StoreUnavailableError(`EventStoreDB returned no position for an append to ${stream}`);
    return { nextExpectedRevision: result.nextExpectedRevision, position: result.position.commit };
  }

  async *readStream(stream: string, options: ReadStreamOptions = {}): AsyncIterable<RecordedEvent> {
    validateStreamName(stream);
    const from = options.fromRevision;
    // Backwards from the start, only the first event can be read: read it forwards.
    const firstOnly = from === "start" && options.direction === "backwards";
    const backwards = options.direction === "backwards" && !firstOnly;
    let remaining = firstOnly ? Math.min(options.maxCount ?? 1, 1) : (options.maxCount ?? Number.MAX_SAFE_INTEGER);
    let cursor: bigint | "start" | "end" = typeof from === "bigint" ? from : from === "end" || backwards ? "end" : "start";
    let first = true;
    while (remaining > 0) {
      const pageSize = Math.min(remaining, READ_PAGE);
      const page = await this.readStreamPage(stream, cursor, backwards, pageSize);
      if (page === "not_found") {
        if (first) throw new StreamNotFoundError(stream);
        return;
      }
      first = false;
      for (const e of page) yield e;
      remaining -= page.length;
      if (page.length < pageSize) return;
      const last = page[page.length - 1]!.revision;
      if (backwards && last === 0n) return;
      cursor = backwards ? last - 1n : last + 1n;
    }
  }

  /**
   * One page of a stream read, straight over the Streams.Read call. The client's own readStream signals
   * a missing stream by destroying its reader after the call has ended, an error Bun's streams drop, so
   * the read would end quietly or hang; reading the response messages ourselves makes "not found" exact.
   */
  private readStreamPage(stream: string, from: bigint | "start" | "end", backwards: boolean, count: number): Promise<RecordedEvent[] | "not_found"> {
    const req = new streamsPb.ReadReq();
    const options = new streamsPb.ReadReq.Options();
    const streamOptions = new streamsPb.ReadReq.Options.StreamOptions();
    streamOptions.setStreamIdentifier(createStreamIdentifier(stream));
    if (from === "start") streamOptions.setStart(new sharedPb.Empty());
    else if (from === "end") streamOptions.setEnd(new sharedPb.Empty());
    else streamOptions.setRevision(from.toString(10));
    const uuid = new streamsPb.ReadReq.Options.UUIDOption();
    uuid.setString(new sharedPb.Empty());
    options.setStream(streamOptions);
    options.setResolveLinks(false);
    options.setCount(String(count));
    options.setUuidOption(uuid);
    options.setNoFilter(new sharedPb.Empty());
    options.setReadDirection(backwards ? 1 : 0);
    req.setOptions(options);
    const internals = this.client as unknown as ClientInternals;
    return internals.execute(StreamsClient, "readStream", (grpcClient) => new Promise((resolve, reject) => {
      const events: RecordedEvent[] = [];
      let notFound = false;
      const call = grpcClient.read(req, ...internals.callArguments({}));
      call.on("data", (resp: InstanceType<typeof streamsPb.ReadResp>) => {
        if (resp.hasStreamNotFound()) notFound = true;
        else if (resp.hasEvent()) {
          const e = fromResolved(convertGrpcEvent(resp.getEvent()!) as ResolvedEvent);
          if (e) events.push(e);
        }
      });
      call.on("error", (err: unknown) => reject(translateError(convertToCommandError(err as Error), stream)));
      call.on("end", () => resolve(notFound ? "not_found" : events));
    }));
  }

  async *readAll(options: ReadAllOptions = {}): AsyncIterable<RecordedEvent> {
    const from = options.fromPosition;
    const backwards = options.direction === "backwards";
    const reading = this.client.readAll({
      fromPosition: typeof from === "bigint" ? { commit: from, prepare: from } : from === "end" || (from === undefined && backwards) ? END : START,
      direction: backwards ? BACKWARDS : FORWARDS,
    });
    let remaining = options.maxCount ?? Number.MAX_SAFE_INTEGER;
    if (remaining <= 0) return;
    try {
      for await (const resolved of reading as AsyncIterable<AllStreamResolvedEvent>) {
        const e = fromResolved(resolved);
        if (!e || !matchesFilter(e.streamId, e.type, options.filter)) continue;
        yield e;
        if (--remaining <= 0) break;
      }
    } catch (err) {
      throw translateError(err);
    }
  }

  subscribeToStream(stream: string, options: SubscribeToStreamOptions = {}): Subscription {
    validateStreamName(stream);
    const from = options.fromRevision;
    const source = this.client.subscribeToStream(stream, { fromRevision: from === undefined || from === "start" ? START : from });
    return pump(source, stream, () => true);
  }

  subscribeToAll(options: SubscribeToAllOptions = {}): Subscription {
    const from = options.fromPosition;
    const source = this.client.subscribeToAll({
      fromPosition: from === undefined || from === "start" ? START : { commit: from, prepare: from },
      filter: serverFilter(options.filter),
    });
    return pump(source, undefined, (e) => matchesFilter(e.streamId, e.type, options.filter));
  }

  async deleteStream(stream: string, options: AppendOptions = {}): Promise<DeleteResult> {
    validateStreamName(stream);
    const r = await translate(() => this.client.deleteStream(stream, { expectedRevision: deleteExpectation(options) }), stream);
    return r.position ? { position: r.position.commit } : {};
  }

  async tombstoneStream(stream: string, options: AppendOptions = {}): Promise<DeleteResult> {
    validateStreamName(stream);
    const r = await translate(() => this.client.tombstoneStream(stream, { expectedRevision: deleteExpectation(options) }), stream);
    return r.position ? { position: r.position.commit } : {};
  }

  async headPosition(): Promise<bigint | null> {
    for await (const e of this.readAll({ direction: "backwards", maxCount: 1 })) return e.position;
    return null;
  }

  async ping(): Promise<void> {
    await translate(async () => {
      for await (const _ of this.client.readAll({ direction: BACKWARDS, fromPosition: END, maxCount: 1 })) break;
    });
  }

  async close(): Promise<void> {
    // dispose() cancels the client's open calls and waits for each to report finished; under Bun a call
    // that had already ended never reports it, so the wait is bounded. Then the channel itself is closed.
    await Promise.race([this.client.dispose(), Bun.sleep(1000)]);
    const internals = this.client as unknown as ClientInternals;
    (await internals.getChannel()).close();
  }
}

/** The client's delete calls take no "stream_exists"; "any" on an existing stream means the same there. */
function deleteExpectation(options: AppendOptions): bigint | "any" | "no_stream" {
  const expected = options.expectedRevision ?? "any";
  return expected === "stream_exists" ? "any" : expected;
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

/** Feeds an EventStoreDB subscription (a Node readable) into our buffered subscription, with backpressure. */
function pump(
  source: AsyncIterable<ResolvedEvent> & { on(event: string, fn: () => void): unknown; unsubscribe(): Promise<void> },
  stream: string | undefined,
  keep: (e: RecordedEvent) => boolean,
): Subscription {
  const sub = new BufferedSubscription(() => source.unsubscribe().catch(() => {}));
  source.on("caughtUp", () => sub.markCaughtUp());
  void (async () => {
    try {
      for await (const resolved of source) {
        const e = fromResolved(resolved);
        if (e && keep(e)) sub.push(e);
        await sub.hasRoom();
        if (sub.isClosed) break;
      }
      await sub.unsubscribe();
    } catch (err) {
      if (!sub.isClosed) sub.fail(translateError(err, stream));
    }
  })();
  return sub;
}

function fromResolved(resolved: ResolvedEvent): RecordedEvent | undefined {
  const e = resolved.event;
  if (!e || !e.isJson || e.streamId.startsWith("$") || e.type.startsWith("$")) return undefined;
  const position = e.position?.commit ?? resolved.commitPosition;
  if (position === undefined) return undefined;
  return {
    id: e.id, type: e.type, streamId: e.streamId, revision: e.revision, position,
    data: e.data, metadata: fromEsdbMetadata(e.metadata), created: e.created,
  };
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

async function translate<T>(op: () => Promise<T>, stream?: string): Promise<T> {
  try {
    return await op();
  } catch (err) {
    throw translateError(err, stream);
  }
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

/** Maps the client's command errors to ours. */
export function translateError(err: unknown, stream?: string): Error {
  const e = err as { type?: string; streamName?: string; expectedVersion?: ExpectedRevision; actualVersion?: bigint | "no_stream"; message?: string };
  switch (e?.type) {
    case ErrorType.WRONG_EXPECTED_VERSION:
      return new WrongExpectedVersionError(e.streamName || stream || "", expectedFromWire(e.expectedVersion), actualFromWire(e.actualVersion));
    case ErrorType.STREAM_NOT_FOUND:
      return new StreamNotFoundError(e.streamName || stream || "");
    case ErrorType.STREAM_DELETED:
      return new StreamDeletedError(e.streamName || stream || "");
    case ErrorType.INVALID_ARGUMENT:
      return new InvalidEventError(e.message ?? "Invalid argument");
    case ErrorType.UNAVAILABLE:
    case ErrorType.DEADLINE_EXCEEDED:
    case ErrorType.TIMEOUT:
    case ErrorType.NOT_LEADER:
    case ErrorType.CANCELLED:
      return new StoreUnavailableError(`EventStoreDB unavailable: ${e.message ?? e.type}`, err);
  }
  return err instanceof Error ? err : new Error(String(err));
}
