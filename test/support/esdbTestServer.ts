/**
 * A protocol-level EventStoreDB test server: the real gRPC services (ServerFeatures, Streams Read with
 * subscriptions, Append, BatchAppend, Delete, Tombstone), built from the service definitions generated
 * into the `@eventstore/db-client` package, speaking the real wire format over HTTP/2, and backed by the
 * memory adapter. No EventStoreDB server can be installed on these machines; this lets the esdb
 * adapter's real code run over real gRPC in every test run. Errors are encoded the way EventStoreDB
 * encodes them (exception metadata, packed google.rpc.Status details), so the client's own error
 * translation runs too.
 */
import * as grpc from "@grpc/grpc-js";
import { Any } from "google-protobuf/google/protobuf/any_pb.js";
import { Empty } from "google-protobuf/google/protobuf/empty_pb.js";
import { ServerFeaturesService } from "@eventstore/db-client/generated/serverfeatures_grpc_pb.js";
import { StreamsService } from "@eventstore/db-client/generated/streams_grpc_pb.js";
import serverFeatures from "@eventstore/db-client/generated/serverfeatures_pb.js";
import streamsPb from "@eventstore/db-client/generated/streams_pb.js";
import sharedPb from "@eventstore/db-client/generated/shared_pb.js";
import statusPb from "@eventstore/db-client/generated/status_pb.js";
import { MemoryEventStore } from "../../src/eventstore/adapters/memory.ts";
import {
  EventStoreError, StreamDeletedError, StreamNotFoundError, WrongExpectedVersionError,
} from "../../src/eventstore/errors.ts";
import type { EventData, ExpectedRevision, RecordedEvent, Subscription } from "../../src/eventstore/port.ts";

const { ReadResp, AppendResp, BatchAppendResp, DeleteResp, TombstoneResp } = streamsPb;
type ReadReq = InstanceType<typeof streamsPb.ReadReq>;
type ProposedMessage = InstanceType<typeof streamsPb.AppendReq.ProposedMessage> | InstanceType<typeof streamsPb.BatchAppendReq.ProposedMessage>;

export interface EsdbTestServer {
  connectionString: string;
  store: MemoryEventStore;
  stop(): Promise<void>;
}

export interface EsdbTestServerOptions {
  /** Advertise BatchAppend (the client then appends through it); otherwise the client uses Append. */
  batchAppend?: boolean;
}

export async function startEsdbTestServer(options: EsdbTestServerOptions = {}): Promise<EsdbTestServer> {
  const store = new MemoryEventStore();
  const server = new grpc.Server();
  const open = new Set<Subscription>();

  server.addService(ServerFeaturesService as unknown as grpc.ServiceDefinition, {
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
  });

  server.addService(StreamsService as unknown as grpc.ServiceDefinition, {
    read(call: grpc.ServerWritableStream<ReadReq, unknown>) {
      void handleRead(store, call, open).catch((err) => call.emit("error", toServiceError(err)));
    },

    append(call: grpc.ServerReadableStream<any, unknown>, callback: grpc.sendUnaryData<unknown>) {
      let stream = "";
      let expected: ExpectedRevision = "any";
      const events: EventData[] = [];
      call.on("data", (req: any) => {
        if (req.hasOptions()) {
          const o = req.getOptions();
          stream = streamName(o.getStreamIdentifier());
          expected = o.hasRevision() ? BigInt(o.getRevision()) : o.hasNoStream() ? "no_stream" : o.hasStreamExists() ? "stream_exists" : "any";
        } else {
          events.push(fromProposed(req.getProposedMessage()));
        }
      });
      call.on("end", async () => {
        const resp = new AppendResp();
        try {
          const r = await store.appendToStream(stream, events, { expectedRevision: expected });
          const success = new AppendResp.Success();
          success.setCurrentRevision(r.nextExpectedRevision.toString());
          const pos = new AppendResp.Position();
          pos.setCommitPosition(r.position.toString());
          pos.setPreparePosition(r.position.toString());
          success.setPosition(pos);
          resp.setSuccess(success);
        } catch (err) {
          if (!(err instanceof WrongExpectedVersionError)) return callback(toServiceError(err));
          const wev = new AppendResp.WrongExpectedVersion();
          if (err.actual === "no_stream") wev.setCurrentNoStream(new sharedPb.Empty());
          else wev.setCurrentRevision(err.actual.toString());
          setExpected(wev, err.expected, { revision: "setExpectedRevision", any: "setExpectedAny", exists: "setExpectedStreamExists", none: "setExpectedNoStream" });
          resp.setWrongExpectedVersion(wev);
        }
        callback(null, resp);
      });
    },

    batchAppend(call: grpc.ServerDuplexStream<any, unknown>) {
      const pending = new Map<string, { stream: string; expected: ExpectedRevision; events: EventData[] }>();
      let chain = Promise.resolve();
      call.on("data", (req: any) => {
        const correlation = req.getCorrelationId();
        const key = uuidString(correlation);
        let batch = pending.get(key);
        if (req.hasOptions()) {
          const o = req.getOptions();
          const expected: ExpectedRevision = o.hasStreamPosition() ? BigInt(o.getStreamPosition()) : o.hasNoStream() ? "no_stream" : o.hasStreamExists() ? "stream_exists" : "any";
          batch = { stream: streamName(o.getStreamIdentifier()), expected, events: [] };
          pending.set(key, batch);
        }
        if (!batch) return;
        for (const m of req.getProposedMessagesList()) batch.events.push(fromProposed(m));
        if (!req.getIsFinal()) return;
        pending.delete(key);
        const done = batch;
        // Batches are answered in the order they completed, like the server's single writer.
        chain = chain.then(async () => {
          const resp = new BatchAppendResp();
          resp.setCorrelationId(correlation);
          resp.setStreamIdentifier(req.getOptions()?.getStreamIdentifier() ?? identifier(done.stream));
          try {
            const r = await store.appendToStream(done.stream, done.events, { expectedRevision: done.expected });
            const success = new BatchAppendResp.Success();
            success.setCurrentRevision(r.nextExpectedRevision.toString());
            const pos = new sharedPb.AllStreamPosition();
            pos.setCommitPosition(r.position.toString());
            pos.setPreparePosition(r.position.toString());
            success.setPosition(pos);
            resp.setSuccess(success);
          } catch (err) {
            resp.setError(toStatus(err, done.stream));
          }
          call.write(resp);
        });
      });
      call.on("end", () => void chain.then(() => call.end()));
    },

    delete: removal((stream, expectedRevision) => store.deleteStream(stream, { expectedRevision }), DeleteResp),
    tombstone: removal((stream, expectedRevision) => store.tombstoneStream(stream, { expectedRevision }), TombstoneResp),
  });

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    connectionString: `esdb://127.0.0.1:${port}?tls=false`,
    store,
    async stop() {
      // Open subscriptions and BatchAppend streams would keep a graceful shutdown waiting: cut them.
      server.forceShutdown();
      for (const sub of open) await sub.unsubscribe();
      await store.close();
    },
  };
}

/** A unary Delete or Tombstone handler: both take stream and expected revision and answer with no position. */
function removal(
  remove: (stream: string, expected: ExpectedRevision) => Promise<unknown>,
  Resp: typeof DeleteResp | typeof TombstoneResp,
) {
  return (call: grpc.ServerUnaryCall<any, unknown>, callback: grpc.sendUnaryData<unknown>) => {
    const o = call.request.getOptions();
    remove(streamName(o.getStreamIdentifier()), expectedOf(o))
      .then(() => {
        const resp = new Resp();
        resp.setNoPosition(new sharedPb.Empty());
        callback(null, resp);
      })
      .catch((err) => callback(toServiceError(err)));
  };
}

async function handleRead(store: MemoryEventStore, call: grpc.ServerWritableStream<ReadReq, unknown>, open: Set<Subscription>) {
  const o = call.request.getOptions()!;
  const backwards = o.getReadDirection() === streamsPb.ReadReq.Options.ReadDirection.BACKWARDS;
  const matches = filterOf(o);

  if (o.hasSubscription()) {
    let sub: Subscription;
    if (o.hasStream()) {
      const so = o.getStream()!;
      const stream = streamName(so.getStreamIdentifier());
      const from = so.hasRevision() ? BigInt(so.getRevision()) : so.hasEnd() ? await lastRevision(store, stream) : "start";
      sub = store.subscribeToStream(stream, { fromRevision: from });
    } else {
      const ao = o.getAll()!;
      const from = ao.hasPosition() ? BigInt(ao.getPosition()!.getCommitPosition()) : ao.hasEnd() ? ((await store.headPosition()) ?? "start") : "start";
      sub = store.subscribeToAll({ fromPosition: from });
    }
    open.add(sub);
    const stop = () => {
      open.delete(sub);
      void sub.unsubscribe();
    };
    call.on("cancelled", stop);
    call.on("close", stop);
    const confirmation = new ReadResp();
    const c = new ReadResp.SubscriptionConfirmation();
    c.setSubscriptionId(crypto.randomUUID());
    confirmation.setConfirmation(c);
    call.write(confirmation);
    void sub.waitUntilCaughtUp().then(() => {
      if (call.cancelled || !open.has(sub)) return;
      const caughtUp = new ReadResp();
      caughtUp.setCaughtUp(new ReadResp.CaughtUp());
      call.write(caughtUp);
    });
    try {
      for (;;) {
        const batch = await sub.nextBatch(256);
        if (batch.length === 0) break;
        for (const e of batch) if (matches(e)) await write(call, readEvent(e));
      }
    } catch (err) {
      if (!call.cancelled) call.emit("error", toServiceError(err));
      return;
    }
    if (!call.cancelled) call.end();
    return;
  }

  const count = Number(o.getCount() || "0");
  if (o.hasStream()) {
    const so = o.getStream()!;
    const stream = streamName(so.getStreamIdentifier());
    const fromRevision = so.hasRevision() ? BigInt(so.getRevision()) : so.hasEnd() ? "end" as const : backwards ? "end" as const : "start" as const;
    try {
      for await (const e of store.readStream(stream, { fromRevision, direction: backwards ? "backwards" : "forwards", maxCount: count })) {
        await write(call, readEvent(e));
      }
    } catch (err) {
      if (!(err instanceof StreamNotFoundError)) throw err;
      const resp = new ReadResp();
      const nf = new ReadResp.StreamNotFound();
      nf.setStreamIdentifier(identifier(stream));
      resp.setStreamNotFound(nf);
      call.write(resp);
    }
  } else {
    const ao = o.getAll()!;
    const fromPosition = ao.hasPosition() ? BigInt(ao.getPosition()!.getCommitPosition()) : ao.hasEnd() ? "end" as const : backwards ? "end" as const : "start" as const;
    let sent = 0;
    for await (const e of store.readAll({ fromPosition, direction: backwards ? "backwards" : "forwards" })) {
      if (sent >= count) break;
      if (!matches(e)) continue;
      await write(call, readEvent(e));
      sent++;
    }
  }
  call.end();
}

async function lastRevision(store: MemoryEventStore, stream: string): Promise<bigint | "start"> {
  try {
    for await (const e of store.readStream(stream, { direction: "backwards", maxCount: 1 })) return e.revision;
  } catch {
    /* a missing stream: subscribe from its start */
  }
  return "start";
}

/** Writes with backpressure: waits for 'drain' when grpc-js's buffer is full. */
function write(call: grpc.ServerWritableStream<ReadReq, unknown>, message: unknown): Promise<void> {
  if (call.write(message)) return Promise.resolve();
  return new Promise((resolve) => call.once("drain", () => resolve()));
}

function readEvent(e: RecordedEvent) {
  const r = new ReadResp.ReadEvent.RecordedEvent();
  const id = new sharedPb.UUID();
  id.setString(e.id);
  r.setId(id);
  r.setStreamIdentifier(identifier(e.streamId));
  r.setStreamRevision(e.revision.toString());
  r.setPreparePosition(e.position.toString());
  r.setCommitPosition(e.position.toString());
  const meta = r.getMetadataMap();
  meta.set("type", e.type);
  meta.set("content-type", "application/json");
  // .NET ticks (100 ns) since the Unix epoch, as EventStoreDB sends them.
  meta.set("created", (BigInt(e.created.getTime()) * 10_000n).toString());
  r.setData(new Uint8Array(Buffer.from(JSON.stringify(e.data))));
  r.setCustomMetadata(new Uint8Array(Buffer.from(JSON.stringify(e.metadata))));
  const event = new ReadResp.ReadEvent();
  event.setEvent(r);
  event.setCommitPosition(e.position.toString());
  const resp = new ReadResp();
  resp.setEvent(event);
  return resp;
}

function fromProposed(m: ProposedMessage): EventData {
  const meta = m.getMetadataMap();
  if (meta.get("content-type") !== "application/json") throw new Error("the test server stores JSON events only");
  const custom = Buffer.from(m.getCustomMetadata_asU8()).toString("utf8");
  return {
    id: uuidString(m.getId()),
    type: meta.get("type") as string,
    data: JSON.parse(Buffer.from(m.getData_asU8()).toString("utf8")),
    metadata: custom ? JSON.parse(custom) : {},
  };
}

function filterOf(o: InstanceType<typeof streamsPb.ReadReq.Options>): (e: RecordedEvent) => boolean {
  if (!o.hasFilter()) return () => true;
  const f = o.getFilter()!;
  const expression = f.hasStreamIdentifier() ? f.getStreamIdentifier()! : f.getEventType()!;
  const field = f.hasStreamIdentifier() ? (e: RecordedEvent) => e.streamId : (e: RecordedEvent) => e.type;
  const regex = expression.getRegex();
  const prefixes = expression.getPrefixList();
  const pattern = regex ? new RegExp(regex) : undefined;
  return (e) => (pattern ? pattern.test(field(e)) : prefixes.some((p) => field(e).startsWith(p)));
}

function expectedOf(o: any): ExpectedRevision {
  return o.hasRevision() ? BigInt(o.getRevision()) : o.hasNoStream() ? "no_stream" : o.hasStreamExists() ? "stream_exists" : "any";
}

function setExpected(target: any, expected: ExpectedRevision, setters: { revision: string; any: string; exists: string; none: string }) {
  if (typeof expected === "bigint") target[setters.revision](expected.toString());
  else if (expected === "any") target[setters.any](new sharedPb.Empty());
  else if (expected === "stream_exists") target[setters.exists](new sharedPb.Empty());
  else target[setters.none](new sharedPb.Empty());
}

function streamName(id: InstanceType<typeof sharedPb.StreamIdentifier> | undefined): string {
  return Buffer.from(id?.getStreamName_asU8() ?? new Uint8Array()).toString("utf8");
}

function identifier(stream: string) {
  const id = new sharedPb.StreamIdentifier();
  id.setStreamName(new Uint8Array(Buffer.from(stream, "utf8")));
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

/** Expected revisions as EventStoreDB encodes them in error metadata. */
const EXPECTED_CODE: Record<string, string> = { any: "-2", no_stream: "-1", stream_exists: "-4" };

/** An error the way EventStoreDB sends it on unary and streaming calls: gRPC status plus exception metadata. */
function toServiceError(err: unknown): Partial<grpc.ServiceError> {
  const metadata = new grpc.Metadata();
  if (err instanceof WrongExpectedVersionError) {
    metadata.set("exception", "wrong-expected-version");
    metadata.set("stream-name", err.streamName);
    metadata.set("expected-version", typeof err.expected === "bigint" ? err.expected.toString() : EXPECTED_CODE[err.expected]!);
    if (err.actual !== "no_stream") metadata.set("actual-version", err.actual.toString());
    return { code: grpc.status.FAILED_PRECONDITION, details: err.message, metadata };
  }
  if (err instanceof StreamDeletedError || err instanceof StreamNotFoundError) {
    metadata.set("exception", err instanceof StreamDeletedError ? "stream-deleted" : "stream-not-found");
    metadata.set("stream-name", err.streamName);
    return { code: err instanceof StreamDeletedError ? grpc.status.FAILED_PRECONDITION : grpc.status.NOT_FOUND, details: err.message, metadata };
  }
  if (err instanceof EventStoreError) return { code: grpc.status.INVALID_ARGUMENT, details: err.message, metadata };
  return { code: grpc.status.INTERNAL, details: (err as Error)?.message ?? String(err), metadata };
}

/** A BatchAppend failure: google.rpc.Status with the EventStoreDB error packed into `details`. */
function toStatus(err: unknown, stream: string) {
  const status = new statusPb.Status();
  const details = new Any();
  if (err instanceof WrongExpectedVersionError) {
    const wev = new sharedPb.WrongExpectedVersion();
    if (err.actual === "no_stream") wev.setCurrentNoStream(new Empty());
    else wev.setCurrentStreamRevision(err.actual.toString());
    if (typeof err.expected === "bigint") wev.setExpectedStreamPosition(err.expected.toString());
    else if (err.expected === "any") wev.setExpectedAny(new Empty());
    else if (err.expected === "stream_exists") wev.setExpectedStreamExists(new Empty());
    else wev.setExpectedNoStream(new Empty());
    details.pack(wev.serializeBinary(), "event_store.client.WrongExpectedVersion");
    status.setCode(9);
  } else if (err instanceof StreamDeletedError) {
    const deleted = new sharedPb.StreamDeleted();
    deleted.setStreamIdentifier(identifier(stream));
    details.pack(deleted.serializeBinary(), "event_store.client.StreamDeleted");
    status.setCode(9);
  } else {
    details.pack(new sharedPb.Unknown().serializeBinary(), "event_store.client.Unknown");
    status.setCode(2);
  }
  status.setMessage((err as Error)?.message ?? String(err));
  status.setDetails(details);
  return status;
}

/**
 * Run as its own process (`bun test/support/esdbTestServer.ts [--no-batch-append]`): prints the
 * connection string on its first line and serves until killed, like a real server would.
 */
if (import.meta.main) {
  const server = await startEsdbTestServer({ batchAppend: !process.argv.includes("--no-batch-append") });
  console.log(server.connectionString);
  const stop = () => void server.stop().then(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

/** Starts the test server in a child process and resolves with its connection string. */
export async function spawnEsdbTestServer(options: EsdbTestServerOptions = {}): Promise<{ connectionString: string; stop(): Promise<void> }> {
  const child = Bun.spawn(["bun", import.meta.path, ...(options.batchAppend === false ? ["--no-batch-append"] : [])], {
    stdout: "pipe",
    stderr: "inherit",
  });
  const reader = child.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the EventStoreDB test server exited before it was ready");
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return {
    connectionString: text.split("\n")[0]!.trim(),
    async stop() {
      child.kill("SIGTERM");
      const exited = await Promise.race([child.exited.then(() => true), Bun.sleep(3000).then(() => false)]);
      if (!exited) {
        child.kill("SIGKILL");
        await child.exited;
      }
    },
  };
}
