/**
 * The esdb adapter against EventStoreDB's gRPC protocol: the shared contract, always against the
 * protocol-level test server (both append paths: BatchAppend and Append) and against a real server when
 * EVENTSTORE_CONNECTION_STRING is set; then what only EventStoreDB does — a server-side append limit,
 * not-leader answers, refused credentials, subscriptions the server drops — and the client-version
 * assumptions the adapter is pinned to.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { EsdbEventStore } from "../../src/eventstore/adapters/esdb.ts";
import {
  AppendTooLargeError, StoreAccessDeniedError, StoreUnavailableError, StreamDeletedError, StreamNotFoundError,
} from "../../src/eventstore/errors.ts";
import { collect, type RecordedEvent, type Subscription } from "../../src/eventstore/port.ts";
import { spawnEsdbTestServer, startEsdbTestServer, type EsdbTestServer } from "../support/esdbTestServer.ts";
import { startTestServer } from "../support/server.ts";
import { drain, ev, eventStoreContract, rejection } from "./eventStore.contract.ts";

for (const batchAppend of [true, false]) {
  eventStoreContract(`esdb over gRPC (test server, ${batchAppend ? "BatchAppend" : "Append"})`, async () => {
    const server = await spawnEsdbTestServer({ batchAppend });
    const store = new EsdbEventStore({ connectionString: server.connectionString });
    return {
      store,
      cleanup: async () => {
        await store.close();
        await server.stop();
      },
    };
  });
}

const real = process.env.EVENTSTORE_CONNECTION_STRING;
if (real) {
  eventStoreContract("esdb (real server from EVENTSTORE_CONNECTION_STRING)", async () => {
    const store = new EsdbEventStore({ connectionString: real });
    // A real node leaves the chunk being written to a later scavenge: erased events may still be in $all.
    return { store, erasesFromAll: false, cleanup: () => store.close() };
  });
}

let counter = 0;
const category = () => `x${Date.now().toString(36)}${(counter++).toString(36)}`;
const types = (events: readonly RecordedEvent[]) => events.map((e) => e.type);

/** Waits (bounded) until the store answers again: the first call after a lost connection is refused. */
async function reachable(store: EsdbEventStore): Promise<void> {
  for (let attempt = 1; attempt <= 40; attempt++) {
    if (await store.ping().then(() => true, () => false)) return;
    await Bun.sleep(25);
  }
  throw new Error("the store did not come back");
}

/** Nothing more arrives on the subscription within a short look (used after the expected events). */
async function quiet(sub: Subscription): Promise<boolean> {
  return (await Promise.race([sub.nextBatch(10), Bun.sleep(150).then(() => "quiet" as const)])) === "quiet";
}

describe("esdb adapter: what only EventStoreDB does", () => {
  for (const batchAppend of [true, false]) {
    describe(`over ${batchAppend ? "BatchAppend" : "Append"}`, () => {
      let server: EsdbTestServer;
      let store: EsdbEventStore;
      beforeAll(async () => {
        // A server configured with a smaller MaxAppendSize than our own 1 MiB check.
        server = await startEsdbTestServer({ batchAppend, maxAppendSize: 64 * 1024 });
        store = new EsdbEventStore({ connectionString: server.connectionString });
      });
      afterAll(async () => {
        await store.close();
        await server.stop();
      });

      test("an append the server finds too big is refused with append-too-large, naming its limit; nothing is written", async () => {
        const s = `${category()}-1`;
        const err = await rejection(store.appendToStream(s, [ev("Big", { blob: "z".repeat(100_000) })]));
        expect(err).toBeInstanceOf(AppendTooLargeError);
        expect((err as AppendTooLargeError).maxBytes).toBe(64 * 1024);
        expect((err as AppendTooLargeError).streamName).toBe(s);
        const ok = await store.appendToStream(s, [ev("Small")], { expectedRevision: "no_stream" });
        expect(ok.nextExpectedRevision).toBe(0n);
      });

      test("an erasure tombstones, then starts a scavenge (Operations.StartScavenge) that drops the events from the log", async () => {
        const s = `${category()}-1`;
        await store.appendToStream(s, [ev("A", { note: "erase me" }), ev("B")]);
        const before = server.calls().startScavenge ?? 0;
        const r = await store.eraseStreams([{ stream: s, expectedRevision: 1n }]);
        expect(r).toMatchObject({ erased: [s], missing: [], reclaim: "scavenge_started" });
        expect(r.scavengeId).toMatch(/^scavenge-/);
        expect(server.calls().startScavenge).toBe(before + 1);
        // Only the tombstone is left of the stream in the server's log.
        expect(server.log.records.filter((rec) => rec.stream === s).map((rec) => rec.type)).toEqual(["$streamDeleted"]);
        // Nothing erased: no scavenge, and the report does not claim one.
        expect(await store.eraseStreams([{ stream: s }])).toEqual({ erased: [], missing: [s], reclaim: "none" });
        expect(server.calls().startScavenge).toBe(before + 1);
      });

      test("a node that refuses the scavenge (no ops rights) leaves the streams erased from reads, and the report says so", async () => {
        const s = `${category()}-1`;
        await store.appendToStream(s, [ev("A")]);
        server.failNextScavenge(1, "access-denied");
        const r = await store.eraseStreams([{ stream: s }]);
        expect(r).toMatchObject({ erased: [s], reclaim: "scavenge_failed" });
        expect(r.reclaimError).toBeTruthy();
        expect(await rejection(collect(store.readStream(s)))).toBeInstanceOf(StreamDeletedError);
      });

      test("not-leader answers are retried on the leader they name, and an append is written once", async () => {
        const s = `${category()}-1`;
        server.failNext(2, "not-leader");
        const first = ev("A");
        const r = await store.appendToStream(s, [first], { expectedRevision: "no_stream" });
        expect(r.nextExpectedRevision).toBe(0n);
        server.failNext(2, "not-leader");
        expect(types(await collect(store.readStream(s)))).toEqual(["A"]);
        server.failNext(1, "not-leader");
        await store.deleteStream(s, { expectedRevision: 0n });
        expect(await rejection(collect(store.readStream(s)))).toBeInstanceOf(StreamNotFoundError);
      });

      test("not-leader retries are bounded: past the bound the store is unavailable, and nothing is written", async () => {
        const s = `${category()}-1`;
        server.failNext(50, "not-leader");
        const before = server.calls();
        // no_stream: an append that needs no read first (`any` reads the stream's last event for its chain).
        const err = await rejection(store.appendToStream(s, [ev("A")], { expectedRevision: "no_stream" }));
        const after = server.calls();
        server.clearFaults();
        expect(err).toBeInstanceOf(StoreUnavailableError);
        const attempts = batchAppend
          ? (after.batchAppendWrite ?? 0) - (before.batchAppendWrite ?? 0)
          : (after.append ?? 0) - (before.append ?? 0);
        expect(attempts).toBe(5);
        expect(await rejection(collect(store.readStream(s)))).toBeInstanceOf(StreamNotFoundError);
      });
    });
  }

  describe("reads a consumer stops early", () => {
    let server: EsdbTestServer;
    let store: EsdbEventStore;
    beforeAll(async () => {
      server = await startEsdbTestServer();
      store = new EsdbEventStore({ connectionString: server.connectionString });
    });
    afterAll(async () => {
      await store.close();
      await server.stop();
    });

    test("are cancelled, not left sending into a stream nobody reads (which stalls every call on the connection)", async () => {
      const cat = category();
      // More than an HTTP/2 flow-control window of events, so that a read left open blocks on it.
      for (let i = 0; i < 10; i++) await store.appendToStream(`${cat}-1`, Array.from({ length: 50 }, () => ev("Pad", { pad: "p".repeat(400) })));
      const sub = store.subscribeToStream(`${cat}-1`);
      try {
        await sub.waitUntilCaughtUp();
        expect(await store.headPosition()).not.toBeNull();
        for await (const _ of store.readAll({})) break;
        for await (const _ of store.readStream(`${cat}-1`)) break;
        let open = server.openReads();
        for (let i = 0; i < 100 && open > 0; i++) {
          await Bun.sleep(20);
          open = server.openReads();
        }
        expect(open).toBe(0);
        // The connection still carries everything: the subscription sees the next append.
        await sub.nextBatch(1000);
        await store.appendToStream(`${cat}-1`, [ev("Next")]);
        expect(types(await drain(sub, 1))).toEqual(["Next"]);
      } finally {
        await sub.unsubscribe();
      }
    });
  });

  describe("a follower node", () => {
    let server: EsdbTestServer;
    let store: EsdbEventStore;
    beforeAll(async () => {
      server = await startEsdbTestServer({ follower: true });
      store = new EsdbEventStore({ connectionString: server.followerConnectionString! });
    });
    afterAll(async () => {
      await store.close();
      await server.stop();
    });

    test("connected to a follower, the store follows it to the leader for appends, reads and subscriptions", async () => {
      const s = `${category()}-1`;
      await store.appendToStream(s, [ev("A"), ev("B")], { expectedRevision: "no_stream" });
      expect(types(await collect(store.readStream(s)))).toEqual(["A", "B"]);
      const sub = store.subscribeToStream(s);
      try {
        expect(types(await drain(sub, 2))).toEqual(["A", "B"]);
      } finally {
        await sub.unsubscribe();
      }
    });
  });

  describe("refused credentials", () => {
    let server: EsdbTestServer;
    beforeAll(async () => {
      server = await startEsdbTestServer({ accessDenied: true });
    });
    afterAll(async () => {
      await server.stop();
    });

    test("ping() fails with access-denied, saying the credentials are refused", async () => {
      const store = new EsdbEventStore({ connectionString: server.connectionString });
      try {
        const err = await rejection(store.ping());
        expect(err).toBeInstanceOf(StoreAccessDeniedError);
        expect((err as Error).message).toContain("refused the credentials");
      } finally {
        await store.close();
      }
    });

    test("the server does not start, and says why", async () => {
      const err = await rejection(startTestServer({ EVENT_STORE: "esdb", EVENTSTORE_CONNECTION_STRING: server.connectionString }));
      expect(err).toBeInstanceOf(StoreAccessDeniedError);
      expect((err as Error).message).toContain("refused the credentials");
      expect((err as Error).message).toContain("EVENTSTORE_CONNECTION_STRING");
    });
  });

  describe("subscriptions the server ends", () => {
    let server: EsdbTestServer;
    let store: EsdbEventStore;
    beforeAll(async () => {
      // A small live buffer, so that a slow subscriber is sent back to catching up.
      server = await startEsdbTestServer({ liveBuffer: 40, fellBehindMessages: true });
      store = new EsdbEventStore({ connectionString: server.connectionString });
    });
    afterAll(async () => {
      await store.close();
      await server.stop();
    });

    for (const drop of ["an error", "a clean end", "a restart", "a scavenge"] as const) {
      test(`after ${drop}, $all and stream subscriptions resume where they were: no gap, no duplicate`, async () => {
        const cat = category();
        const s = `${cat}-1`;
        await store.appendToStream(s, [ev("A"), ev("B")]);
        // An event in a stream that is then deleted and scavenged: the subscription's last position no
        // longer holds a record when it resumes.
        await store.appendToStream(`${cat}-gone`, [ev("Gone")]);
        const all = store.subscribeToAll({ filter: { streamPrefixes: [`${cat}-`] } });
        const one = store.subscribeToStream(s);
        try {
          expect(types(await drain(all, 3))).toEqual(["A", "B", "Gone"]);
          expect(types(await drain(one, 2))).toEqual(["A", "B"]);
          if (drop === "an error") expect(server.dropSubscriptions("error")).toBe(2);
          if (drop === "a clean end") expect(server.dropSubscriptions("end")).toBe(2);
          if (drop === "a restart") {
            await server.restart();
            await reachable(store);
          }
          if (drop === "a scavenge") {
            await store.deleteStream(`${cat}-gone`);
            expect(server.scavenge()).toBeGreaterThan(0);
            server.dropSubscriptions("error");
          }
          await store.appendToStream(s, [ev("C"), ev("D")]);
          expect(types(await drain(all, 2))).toEqual(["C", "D"]);
          expect(types(await drain(one, 2))).toEqual(["C", "D"]);
          expect(await quiet(all)).toBe(true);
          expect(await quiet(one)).toBe(true);
        } finally {
          await all.unsubscribe();
          await one.unsubscribe();
        }
      });
    }

    test("a subscriber that falls behind live events is caught up again, missing nothing", async () => {
      const cat = category();
      const sub = store.subscribeToAll({ filter: { streamPrefixes: [`${cat}-`] } });
      try {
        await sub.waitUntilCaughtUp();
        // Far more than the live buffer while the subscriber reads nothing.
        for (let i = 0; i < 10; i++) await store.appendToStream(`${cat}-1`, Array.from({ length: 30 }, (_, j) => ev("Live", { n: i * 30 + j })));
        const got = await drain(sub, 300);
        expect(got.map((e) => (e.data as { n: number }).n)).toEqual(Array.from({ length: 300 }, (_, n) => n));
        expect(await quiet(sub)).toBe(true);
      } finally {
        await sub.unsubscribe();
      }
    });

    test("a subscription that cannot come back gives up with unavailable, bounded", async () => {
      const sub = store.subscribeToAll({ filter: { streamPrefixes: [`${category()}-`] } });
      try {
        await sub.waitUntilCaughtUp();
        // Every resubscription is refused as unavailable: the subscription must end, not spin.
        server.failNext(100, "unavailable");
        server.dropSubscriptions("error");
        expect(await rejection(sub.nextBatch(1))).toBeInstanceOf(StoreUnavailableError);
      } finally {
        server.clearFaults();
        await sub.unsubscribe();
      }
    });

    test("events the client cannot decode are skipped by reads and subscriptions, not fatal", async () => {
      const cat = category();
      const s = `${cat}-1`;
      const sub = store.subscribeToAll({ filter: { streamPrefixes: [`${cat}-`] } });
      const one = store.subscribeToStream(s);
      try {
        await store.appendToStream(s, [ev("Before")]);
        server.writeForeign(s, "Binary", "application/octet-stream", "\u0000\u0001 not json");
        server.writeForeign(s, "Broken", "application/json", "{ not json");
        await store.appendToStream(s, [ev("After")]);
        expect(types(await drain(sub, 2))).toEqual(["Before", "After"]);
        expect(types(await drain(one, 2))).toEqual(["Before", "After"]);
        expect(types(await collect(store.readStream(s)))).toEqual(["Before", "After"]);
        expect(types(await collect(store.readAll({ filter: { streamPrefixes: [`${cat}-`] } })))).toEqual(["Before", "After"]);
        // Revisions still count the foreign events: the next append expects the stream's real end.
        expect((await store.appendToStream(s, [ev("Next")], { expectedRevision: 3n })).nextExpectedRevision).toBe(4n);
      } finally {
        await sub.unsubscribe();
        await one.unsubscribe();
      }
    });
  });
});

describe("the client version the adapter is pinned to", () => {
  test("package.json pins @eventstore/db-client exactly, and it is the version installed", () => {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
    const pinned = pkg.dependencies["@eventstore/db-client"] as string;
    expect(pinned).toMatch(/^\d+\.\d+\.\d+$/);
    const installed = JSON.parse(readFileSync(new URL("../../node_modules/@eventstore/db-client/package.json", import.meta.url), "utf8")).version;
    expect(installed).toBe(pinned);
  });

  test("close() shuts the client's channel through its protected getChannel, the one way there is", async () => {
    const server = await startEsdbTestServer();
    const store = new EsdbEventStore({ connectionString: server.connectionString });
    try {
      await store.ping();
      const client = (store as unknown as { client: { getChannel?: () => Promise<grpc.Channel> } }).client;
      expect(typeof client.getChannel).toBe("function");
      const channel = await client.getChannel!();
      expect(channel.getConnectivityState(false)).not.toBe(grpc.connectivityState.SHUTDOWN);
      await store.close();
      expect(channel.getConnectivityState(false)).toBe(grpc.connectivityState.SHUTDOWN);
    } finally {
      await server.stop();
    }
  });
});
