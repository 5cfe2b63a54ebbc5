/**
 * The EventStore contract: every adapter runs this same suite (sqlite, memory, esdb over gRPC).
 * Stream names are unique per test so the suite can also run against a long-lived real server.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  AppendTooLargeError, InvalidEventError, StreamDeletedError, StreamNotFoundError, WrongExpectedVersionError,
} from "../../src/eventstore/errors.ts";
import { chainEventOf, verifyStream } from "../../src/audit/chain.ts";
import { chainHash, GENESIS } from "../../src/eventstore/chain.ts";
import { collect, type EventData, type EventStore, type RecordedEvent, type Subscription } from "../../src/eventstore/port.ts";

export interface ContractTarget {
  store: EventStore;
  /**
   * Whether an erasure's events are gone from `$all` when eraseStreams returns: true unless the store
   * only reclaims them later (a real EventStoreDB node leaves the chunk being written to a later scavenge).
   */
  erasesFromAll?: boolean;
  cleanup(): Promise<void>;
}

let counter = 0;
/** A category no other test (or earlier run against a real server) has used. */
const uniqueCategory = () => `t${Date.now().toString(36)}${(counter++).toString(36)}${Math.random().toString(36).slice(2, 6)}`;

export const ev = (type: string, data: unknown = {}, metadata?: EventData["metadata"]): EventData => ({
  id: crypto.randomUUID(), type, data, ...(metadata ? { metadata } : {}),
});

/** The error a promise rejects with; fails the test if it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected the operation to fail, but it succeeded");
}

/** Takes exactly `count` events from a subscription, or fails after `timeoutMs`. */
export async function drain(sub: Subscription, count: number, timeoutMs = 10_000): Promise<RecordedEvent[]> {
  const out: RecordedEvent[] = [];
  const deadline = Date.now() + timeoutMs;
  while (out.length < count) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new Error(`subscription delivered ${out.length} of ${count} events`);
    const batch = await Promise.race([
      sub.nextBatch(count - out.length),
      Bun.sleep(remaining).then(() => null),
    ]);
    if (batch === null) continue;
    if (batch.length === 0) throw new Error("subscription closed early");
    out.push(...batch);
  }
  return out;
}

export function eventStoreContract(name: string, factory: () => Promise<ContractTarget>): void {
  describe(`EventStore contract: ${name}`, () => {
    let target: ContractTarget;
    let store: EventStore;
    beforeAll(async () => {
      target = await factory();
      store = target.store;
    });
    afterAll(async () => {
      await target.cleanup();
    });

    describe("appending", () => {
      test("a new stream gets gapless 0-based revisions and data, metadata and created time round-trip", async () => {
        const s = `${uniqueCategory()}-1`;
        const before = Date.now();
        const r = await store.appendToStream(s, [
          ev("Opened", { n: 1, nested: { list: [1, "two", null] } }, { correlationId: "corr-1", causationId: "cause-1", extra: 7 }),
          ev("Noted", { text: "héllo ✓" }),
        ], { expectedRevision: "no_stream" });
        expect(r.nextExpectedRevision).toBe(1n);
        const events = await collect(store.readStream(s));
        expect(events.map((e) => e.revision)).toEqual([0n, 1n]);
        expect(events.map((e) => e.type)).toEqual(["Opened", "Noted"]);
        expect(events[0]!.data).toEqual({ n: 1, nested: { list: [1, "two", null] } });
        expect(events[1]!.data).toEqual({ text: "héllo ✓" });
        expect(events[0]!.metadata).toMatchObject({ correlationId: "corr-1", causationId: "cause-1", extra: 7 });
        expect(events[0]!.streamId).toBe(s);
        expect(events[1]!.position).toBe(r.position);
        expect(events[0]!.position < events[1]!.position).toBe(true);
        expect(events[0]!.created.getTime()).toBeGreaterThanOrEqual(before - 1000);
        expect(events[0]!.created.getTime()).toBeLessThanOrEqual(Date.now() + 1000);
      });

      test("an exact expected revision appends; a stale one throws wrong-expected-version with expected and actual", async () => {
        const s = `${uniqueCategory()}-1`;
        await store.appendToStream(s, [ev("A"), ev("B")], { expectedRevision: "no_stream" });
        const r = await store.appendToStream(s, [ev("C")], { expectedRevision: 1n });
        expect(r.nextExpectedRevision).toBe(2n);
        const err = await store.appendToStream(s, [ev("D")], { expectedRevision: 1n }).catch((e) => e);
        expect(err).toBeInstanceOf(WrongExpectedVersionError);
        expect(err.expected).toBe(1n);
        expect(err.actual).toBe(2n);
        expect((await collect(store.readStream(s))).length).toBe(3);
      });

      test("no_stream on an existing stream and stream_exists on a missing one both fail", async () => {
        const s = `${uniqueCategory()}-1`;
        const missing = await store.appendToStream(s, [ev("A")], { expectedRevision: "stream_exists" }).catch((e) => e);
        expect(missing).toBeInstanceOf(WrongExpectedVersionError);
        expect(missing.actual).toBe("no_stream");
        await store.appendToStream(s, [ev("A")], { expectedRevision: "no_stream" });
        const exists = await store.appendToStream(s, [ev("B")], { expectedRevision: "no_stream" }).catch((e) => e);
        expect(exists).toBeInstanceOf(WrongExpectedVersionError);
        expect(exists.actual).toBe(0n);
        const ok = await store.appendToStream(s, [ev("B")], { expectedRevision: "stream_exists" });
        expect(ok.nextExpectedRevision).toBe(1n);
        const any = await store.appendToStream(s, [ev("C")]);
        expect(any.nextExpectedRevision).toBe(2n);
      });

      test("retrying the same event ids at the same revision succeeds without writing twice", async () => {
        const s = `${uniqueCategory()}-1`;
        const batch = [ev("A", { i: 1 }), ev("B", { i: 2 })];
        const first = await store.appendToStream(s, batch, { expectedRevision: "no_stream" });
        const retry = await store.appendToStream(s, batch, { expectedRevision: "no_stream" });
        expect(retry.nextExpectedRevision).toBe(first.nextExpectedRevision);
        expect(retry.position).toBe(first.position);
        await store.appendToStream(s, [ev("C")], { expectedRevision: 1n });
        const retryExact = await store.appendToStream(s, batch, { expectedRevision: "no_stream" });
        expect(retryExact.nextExpectedRevision).toBe(1n);
        const single = ev("D");
        const a = await store.appendToStream(s, [single], { expectedRevision: 2n });
        const b = await store.appendToStream(s, [single], { expectedRevision: 2n });
        expect(b).toEqual(a);
        const events = await collect(store.readStream(s));
        expect(events.map((e) => e.type)).toEqual(["A", "B", "C", "D"]);
      });

      test("retrying with expected revision any is recognised too", async () => {
        const s = `${uniqueCategory()}-1`;
        const batch = [ev("A"), ev("B")];
        const first = await store.appendToStream(s, batch);
        const again = await store.appendToStream(s, batch);
        expect(again.nextExpectedRevision).toBe(first.nextExpectedRevision);
        expect((await collect(store.readStream(s))).length).toBe(2);
        // Still recognised after another append landed behind it.
        await store.appendToStream(s, [ev("C")]);
        const late = await store.appendToStream(s, batch);
        expect(late.nextExpectedRevision).toBe(first.nextExpectedRevision);
        expect((await collect(store.readStream(s))).map((e) => e.type)).toEqual(["A", "B", "C"]);
      });

      test("bad input is refused before anything is written", async () => {
        const s = `${uniqueCategory()}-1`;
        expect(await rejection(store.appendToStream(s, [{ id: "not-a-uuid", type: "A", data: {} }]))).toBeInstanceOf(InvalidEventError);
        expect(await rejection(store.appendToStream(s, []))).toBeInstanceOf(InvalidEventError);
        expect(await rejection(store.appendToStream("", [ev("A")]))).toBeInstanceOf(InvalidEventError);
        expect(await rejection(store.appendToStream("$system", [ev("A")]))).toBeInstanceOf(InvalidEventError);
        expect(await rejection(store.appendToStream(s, [ev("$meta")]))).toBeInstanceOf(InvalidEventError);
        const circular: Record<string, unknown> = {};
        circular.self = circular;
        expect(await rejection(store.appendToStream(s, [ev("A"), ev("B", circular)]))).toBeInstanceOf(InvalidEventError);
        const dup = ev("A");
        expect(await rejection(store.appendToStream(s, [dup, dup]))).toBeInstanceOf(InvalidEventError);
        expect(await rejection(collect(store.readStream(s)))).toBeInstanceOf(StreamNotFoundError);
      });

      test("an append over 1 MiB is refused whole with append-too-large; one just under it is stored", async () => {
        const s = `${uniqueCategory()}-1`;
        // Counted as EventStoreDB counts it: data and metadata bytes plus twice the type's length.
        const half = "x".repeat(600_000);
        const err = await rejection(store.appendToStream(s, [ev("Big", { half }), ev("Big", { half })]));
        expect(err).toBeInstanceOf(AppendTooLargeError);
        expect((err as AppendTooLargeError).maxBytes).toBe(1_048_576);
        expect(await rejection(collect(store.readStream(s)))).toBeInstanceOf(StreamNotFoundError);
        const fits = "y".repeat(1_048_576 - 200);
        await store.appendToStream(s, [ev("Fits", { fits })]);
        const [stored] = await collect(store.readStream(s));
        expect((stored!.data as { fits: string }).fits.length).toBe(fits.length);
      });
    });

    describe("reading", () => {
      test("a stream reads forwards and backwards, from a revision, up to maxCount", async () => {
        const s = `${uniqueCategory()}-1`;
        await store.appendToStream(s, Array.from({ length: 10 }, (_, i) => ev("N", { i })));
        const all = await collect(store.readStream(s));
        expect(all.map((e) => (e.data as { i: number }).i)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        const from = await collect(store.readStream(s, { fromRevision: 7n }));
        expect(from.map((e) => e.revision)).toEqual([7n, 8n, 9n]);
        const limited = await collect(store.readStream(s, { fromRevision: 2n, maxCount: 3 }));
        expect(limited.map((e) => e.revision)).toEqual([2n, 3n, 4n]);
        const back = await collect(store.readStream(s, { direction: "backwards", maxCount: 3 }));
        expect(back.map((e) => e.revision)).toEqual([9n, 8n, 7n]);
        const backFrom = await collect(store.readStream(s, { direction: "backwards", fromRevision: 4n }));
        expect(backFrom.map((e) => e.revision)).toEqual([4n, 3n, 2n, 1n, 0n]);
      });

      test("reading a missing stream throws stream-not-found", async () => {
        expect(await rejection(collect(store.readStream(`${uniqueCategory()}-missing`)))).toBeInstanceOf(StreamNotFoundError);
      });

      test("$all reads in position order, inclusive from a position, filtered by stream prefix and event type", async () => {
        const cat = uniqueCategory();
        await store.appendToStream(`${cat}-a`, [ev("X", { k: 1 }), ev("Y", { k: 2 })]);
        await store.appendToStream(`${cat}-b`, [ev("X", { k: 3 })]);
        await store.appendToStream(`${cat}x-c`, [ev("Y", { k: 4 })]);
        const mine = await collect(store.readAll({ filter: { streamPrefixes: [`${cat}-`] } }));
        expect(mine.map((e) => (e.data as { k: number }).k)).toEqual([1, 2, 3]);
        for (let i = 1; i < mine.length; i++) expect(mine[i - 1]!.position < mine[i]!.position).toBe(true);
        const xs = await collect(store.readAll({ filter: { streamPrefixes: [cat], eventTypes: ["X"] } }));
        expect(xs.map((e) => (e.data as { k: number }).k)).toEqual([1, 3]);
        const fromSecond = await collect(store.readAll({ fromPosition: mine[1]!.position, filter: { streamPrefixes: [`${cat}-`] } }));
        expect(fromSecond.map((e) => (e.data as { k: number }).k)).toEqual([2, 3]);
        const firstTwo = await collect(store.readAll({ maxCount: 2, filter: { streamPrefixes: [cat] } }));
        expect(firstTwo.map((e) => (e.data as { k: number }).k)).toEqual([1, 2]);
        const back = await collect(store.readAll({ direction: "backwards", maxCount: 2, filter: { streamPrefixes: [cat] } }));
        expect(back.map((e) => (e.data as { k: number }).k)).toEqual([4, 3]);
        const head = await store.headPosition();
        expect(head !== null && head >= back[0]!.position).toBe(true);
      });

      test("$all read backwards from a position starts with the event at that position", async () => {
        const cat = uniqueCategory();
        await store.appendToStream(`${cat}-1`, [ev("A")]);
        await store.appendToStream(`${cat}-2`, [ev("B")]);
        await store.appendToStream(`${cat}-1`, [ev("C")]);
        const filter = { streamPrefixes: [`${cat}-`] };
        const mine = await collect(store.readAll({ filter }));
        expect(mine.map((e) => e.type)).toEqual(["A", "B", "C"]);
        const back = await collect(store.readAll({ direction: "backwards", fromPosition: mine[1]!.position, filter }));
        expect(back.map((e) => e.type)).toEqual(["B", "A"]);
        const last = await collect(store.readAll({ direction: "backwards", fromPosition: mine[2]!.position, maxCount: 1, filter }));
        expect(last.map((e) => e.id)).toEqual([mine[2]!.id]);
      });
    });

    describe("subscriptions", () => {
      test("a stream subscription catches up, then goes live, from an exclusive revision", async () => {
        const s = `${uniqueCategory()}-1`;
        await store.appendToStream(s, [ev("A"), ev("B"), ev("C")]);
        const fromStart = store.subscribeToStream(s);
        const fromOne = store.subscribeToStream(s, { fromRevision: 1n });
        try {
          expect((await drain(fromStart, 3)).map((e) => e.type)).toEqual(["A", "B", "C"]);
          expect((await drain(fromOne, 1)).map((e) => e.type)).toEqual(["C"]);
          await fromStart.waitUntilCaughtUp();
          expect(fromStart.caughtUp).toBe(true);
          await store.appendToStream(s, [ev("D"), ev("E")]);
          expect((await drain(fromStart, 2)).map((e) => e.revision)).toEqual([3n, 4n]);
          expect((await drain(fromOne, 2)).map((e) => e.revision)).toEqual([3n, 4n]);
        } finally {
          await fromStart.unsubscribe();
          await fromOne.unsubscribe();
        }
      });

      test("caught up means the whole history is in the buffer: 600 events, to a stream and to $all", async () => {
        const cat = uniqueCategory();
        const s = `${cat}-1`;
        for (let i = 0; i < 6; i++) await store.appendToStream(s, Array.from({ length: 100 }, (_, j) => ev("History", { n: i * 100 + j })));
        for (const sub of [store.subscribeToStream(s), store.subscribeToAll({ filter: { streamPrefixes: [`${cat}-`] } })]) {
          try {
            await sub.waitUntilCaughtUp();
            expect(sub.caughtUp).toBe(true);
            // Everything that existed is already buffered: one batch holds all of it.
            const buffered = await sub.nextBatch(1000);
            expect(buffered.map((e) => (e.data as { n: number }).n)).toEqual(Array.from({ length: 600 }, (_, n) => n));
          } finally {
            await sub.unsubscribe();
          }
        }
      });

      test("a stream subscription waits for a stream that does not exist yet", async () => {
        const s = `${uniqueCategory()}-later`;
        const sub = store.subscribeToStream(s);
        try {
          await Bun.sleep(30);
          await store.appendToStream(s, [ev("First")]);
          expect((await drain(sub, 1))[0]!.type).toBe("First");
        } finally {
          await sub.unsubscribe();
        }
      });

      test("an $all subscription delivers after an exclusive position, filtered", async () => {
        const cat = uniqueCategory();
        const first = await store.appendToStream(`${cat}-1`, [ev("A")]);
        await store.appendToStream(`${cat}-2`, [ev("B")]);
        await store.appendToStream(`other${cat}-3`, [ev("C")]);
        const sub = store.subscribeToAll({ fromPosition: first.position, filter: { streamPrefixes: [`${cat}-`] } });
        try {
          expect((await drain(sub, 1)).map((e) => e.type)).toEqual(["B"]);
          await store.appendToStream(`${cat}-1`, [ev("D")]);
          await store.appendToStream(`other${cat}-1`, [ev("E")]);
          await store.appendToStream(`${cat}-3`, [ev("F")]);
          expect((await drain(sub, 2)).map((e) => e.type)).toEqual(["D", "F"]);
        } finally {
          await sub.unsubscribe();
        }
      });

      test("a subscription started during a burst of appends sees every event exactly once, in order", async () => {
        const cat = uniqueCategory();
        const total = 600;
        const writers = Array.from({ length: 4 }, async (_, w) => {
          for (let i = 0; i < total / 4; i++) {
            await store.appendToStream(`${cat}-${w}`, [ev("Burst", { w, i })]);
            if (i % 25 === 0) await Bun.sleep(0);
          }
        });
        await Bun.sleep(5);
        const sub = store.subscribeToAll({ filter: { streamPrefixes: [`${cat}-`] } });
        try {
          await Promise.all(writers);
          const got = await drain(sub, total);
          const ids = new Set(got.map((e) => e.id));
          expect(ids.size).toBe(total);
          for (let i = 1; i < got.length; i++) expect(got[i - 1]!.position < got[i]!.position).toBe(true);
          for (let w = 0; w < 4; w++) {
            const mine = got.filter((e) => (e.data as { w: number }).w === w).map((e) => (e.data as { i: number }).i);
            expect(mine).toEqual(Array.from({ length: total / 4 }, (_, i) => i));
          }
          // Nothing more arrives: no duplicate after the burst.
          const extra = await Promise.race([sub.nextBatch(10), Bun.sleep(150).then(() => "none")]);
          expect(extra).toBe("none");
        } finally {
          await sub.unsubscribe();
        }
      });

      test("a stream subscription ends with stream-deleted when its stream is tombstoned, after what came before", async () => {
        const s = `${uniqueCategory()}-1`;
        await store.appendToStream(s, [ev("A"), ev("B")]);
        const sub = store.subscribeToStream(s);
        try {
          expect((await drain(sub, 2)).map((e) => e.type)).toEqual(["A", "B"]);
          await store.tombstoneStream(s);
          expect(await rejection(drain(sub, 1))).toBeInstanceOf(StreamDeletedError);
        } finally {
          await sub.unsubscribe();
        }
      });

      test("a subscriber that never reads does not block appends", async () => {
        const cat = uniqueCategory();
        const idle = store.subscribeToAll({ filter: { streamPrefixes: [`${cat}-`] } });
        try {
          for (let i = 0; i < 30; i++) {
            await store.appendToStream(`${cat}-1`, Array.from({ length: 100 }, (_, j) => ev("Bulk", { i, j })));
          }
          const events = await drain(idle, 3000, 30_000);
          expect(events.length).toBe(3000);
          expect((events[2999]!.data as { i: number }).i).toBe(29);
        } finally {
          await idle.unsubscribe();
        }
      });
    });

    describe("deleting", () => {
      test("soft delete hides the stream; appending reopens it with revisions continuing", async () => {
        const s = `${uniqueCategory()}-1`;
        await store.appendToStream(s, [ev("A"), ev("B")]);
        const stale = await store.deleteStream(s, { expectedRevision: 0n }).catch((e) => e);
        expect(stale).toBeInstanceOf(WrongExpectedVersionError);
        await store.deleteStream(s, { expectedRevision: 1n });
        expect(await rejection(collect(store.readStream(s)))).toBeInstanceOf(StreamNotFoundError);
        const reopened = await store.appendToStream(s, [ev("C")]);
        expect(reopened.nextExpectedRevision).toBe(2n);
        const events = await collect(store.readStream(s));
        expect(events.map((e) => [e.type, e.revision])).toEqual([["C", 2n]]);
      });

      test("soft-deleting a stream that never existed throws stream-not-found", async () => {
        const s = `${uniqueCategory()}-never`;
        expect(await rejection(store.deleteStream(s))).toBeInstanceOf(StreamNotFoundError);
        expect(await rejection(store.deleteStream(s, { expectedRevision: "no_stream" }))).toBeInstanceOf(StreamNotFoundError);
        const stale = await rejection(store.deleteStream(s, { expectedRevision: 3n }));
        expect(stale).toBeInstanceOf(WrongExpectedVersionError);
      });

      test("a tombstoned stream is gone for good", async () => {
        const s = `${uniqueCategory()}-1`;
        await store.appendToStream(s, [ev("A")]);
        await store.tombstoneStream(s, { expectedRevision: 0n });
        expect(await rejection(collect(store.readStream(s)))).toBeInstanceOf(StreamDeletedError);
        expect(await rejection(store.appendToStream(s, [ev("B")]))).toBeInstanceOf(StreamDeletedError);
        expect(await rejection(store.tombstoneStream(s))).toBeInstanceOf(StreamDeletedError);
      });
    });

    describe("erasing", () => {
      const verify = async (s: string) => verifyStream(s, (await collect(store.readStream(s))).map(chainEventOf));
      const inAll = async (streams: readonly string[]) =>
        (await collect(store.readAll({ filter: { streamPrefixes: streams.map((s) => s.slice(0, s.indexOf("-") + 1)) } }))).filter((e) => streams.includes(e.streamId));

      test("erased streams are gone from their reads and from $all; others, and their chains, are untouched", async () => {
        const c = uniqueCategory();
        const [gone, kept, never] = [`${c}-gone`, `${c}-kept`, `${c}-never`];
        await store.appendToStream(gone, [ev("A", { secret: "erase me" }), ev("B")]);
        await store.appendToStream(kept, [ev("A"), ev("B")]);
        await store.appendToStream(gone, [ev("C")]);
        const r = await store.eraseStreams([{ stream: gone, expectedRevision: 2n }, { stream: never }]);
        expect(r.erased).toEqual([gone]);
        expect(r.missing).toEqual([never]);
        expect(await rejection(collect(store.readStream(gone)))).toBeInstanceOf(StreamDeletedError);
        // Tombstoned: the name is never reused.
        expect(await rejection(store.appendToStream(gone, [ev("D")]))).toBeInstanceOf(StreamDeletedError);
        if (target.erasesFromAll !== false) expect((await inAll([gone, kept])).map((e) => e.streamId)).toEqual([kept, kept]);
        expect((await collect(store.readStream(kept))).map((e) => e.type)).toEqual(["A", "B"]);
        expect(await verify(kept)).toMatchObject({ ok: true, events: 2 });
        // Erasing again finds nothing to erase, and reclaims nothing (no VACUUM, no scavenge).
        expect(await store.eraseStreams([{ stream: gone }])).toEqual({ erased: [], missing: [gone], reclaim: "none" });
      });

      test("a reusable stream reads as missing, and starts again with its revisions continuing and a new chain", async () => {
        const s = `${uniqueCategory()}-reused`;
        await store.appendToStream(s, [ev("A"), ev("B")]);
        expect((await store.eraseStreams([{ stream: s, reusable: true }])).erased).toEqual([s]);
        expect(await rejection(collect(store.readStream(s)))).toBeInstanceOf(StreamNotFoundError);
        if (target.erasesFromAll !== false) expect(await inAll([s])).toEqual([]);
        const again = await store.appendToStream(s, [ev("C")]);
        expect(again.nextExpectedRevision).toBe(2n);
        const events = await collect(store.readStream(s));
        expect(events.map((e) => [e.type, e.revision])).toEqual([["C", 2n]]);
        expect(await verify(s)).toMatchObject({ ok: true, events: 1 });
      });

      test("erasing the newest events frees no position: the next append lands after every position given before", async () => {
        const c = uniqueCategory();
        await store.appendToStream(`${c}-kept`, [ev("A")]);
        const last = await store.appendToStream(`${c}-gone`, [ev("A"), ev("B")]);
        await store.eraseStreams([{ stream: `${c}-gone` }]);
        if (target.erasesFromAll !== false) expect(await store.headPosition()).not.toBe(last.position);
        const next = await store.appendToStream(`${c}-kept`, [ev("B")]);
        expect(next.position > last.position).toBe(true);
        const tail = await collect(store.readAll({ direction: "backwards", maxCount: 1 }));
        expect(tail.map((e) => [e.streamId, e.position])).toEqual([[`${c}-kept`, next.position]]);
      });

      test("a stream that moved past the expected revision is not erased", async () => {
        const s = `${uniqueCategory()}-moved`;
        await store.appendToStream(s, [ev("A"), ev("B")]);
        expect(await rejection(store.eraseStreams([{ stream: s, expectedRevision: 0n }]))).toBeInstanceOf(WrongExpectedVersionError);
        expect((await collect(store.readStream(s))).map((e) => e.type)).toEqual(["A", "B"]);
      });
    });

    describe("hash chain", () => {
      const verify = async (s: string) => verifyStream(s, (await collect(store.readStream(s))).map(chainEventOf));

      test("each event's chain links it to the one before, over every kind of expected revision", async () => {
        const s = `${uniqueCategory()}-1`;
        await store.appendToStream(s, [ev("A", { n: 1 }, { correlationId: "c", extra: { b: 2, a: 1 } }), ev("B")], { expectedRevision: "no_stream" });
        await store.appendToStream(s, [ev("C")], { expectedRevision: 1n });
        await store.appendToStream(s, [ev("D")]);
        await store.appendToStream(s, [ev("E", {}, { chain: "forged" })], { expectedRevision: "stream_exists" });
        const events = await collect(store.readStream(s));
        let prev = GENESIS;
        for (const e of events) {
          const chain = e.metadata.chain as string;
          expect(chain).toMatch(/^[0-9a-f]{64}$/);
          expect(chain).toBe(chainHash(prev, { stream: s, id: e.id, type: e.type, data: e.data, metadata: e.metadata }));
          prev = chain;
        }
        const report = await verify(s);
        expect(report.ok).toBe(true);
        expect(report.head).toEqual({ revision: 4n, chain: prev });
      });

      test("an idempotent retry keeps the original chain; after a soft delete the chain starts again", async () => {
        const s = `${uniqueCategory()}-1`;
        const batch = [ev("A"), ev("B")];
        await store.appendToStream(s, batch);
        const before = (await collect(store.readStream(s))).map((e) => e.metadata.chain);
        await store.appendToStream(s, batch);
        expect((await collect(store.readStream(s))).map((e) => e.metadata.chain)).toEqual(before);
        await store.deleteStream(s);
        const c = ev("C");
        await store.appendToStream(s, [c]);
        const [reopened] = await collect(store.readStream(s));
        expect(reopened!.metadata.chain).toBe(chainHash(GENESIS, { stream: s, id: c.id, type: "C", data: {}, metadata: reopened!.metadata }));
        expect((await verify(s)).ok).toBe(true);
        // Again, appending on the exact revision the delete left (this process wrote the event before it).
        await store.deleteStream(s, { expectedRevision: 2n });
        const d = ev("D");
        await store.appendToStream(s, [d], { expectedRevision: 2n });
        const [again] = await collect(store.readStream(s));
        expect(again!.metadata.chain).toBe(chainHash(GENESIS, { stream: s, id: d.id, type: "D", data: {}, metadata: again!.metadata }));
      });

      test("concurrent appends to one stream, any expected revision, keep one valid chain", async () => {
        const s = `${uniqueCategory()}-1`;
        await Promise.all(Array.from({ length: 20 }, (_, i) => store.appendToStream(s, [ev("X", { i }), ev("Y", { i })])));
        const report = await verify(s);
        expect(report.events).toBe(40);
        expect(report.ok).toBe(true);
      });
    });

    describe("races", () => {
      test("two writers with the same exact expected revision: exactly one wins", async () => {
        for (let round = 0; round < 10; round++) {
          const s = `${uniqueCategory()}-1`;
          await store.appendToStream(s, [ev("Start")]);
          const results = await Promise.allSettled([
            store.appendToStream(s, [ev("Left")], { expectedRevision: 0n }),
            store.appendToStream(s, [ev("Right")], { expectedRevision: 0n }),
          ]);
          expect(results.filter((r) => r.status === "fulfilled").length).toBe(1);
          const rejected = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
          expect(rejected.reason).toBeInstanceOf(WrongExpectedVersionError);
          expect((await collect(store.readStream(s))).length).toBe(2);
        }
      });

      test("50 concurrent appenders on distinct streams: every position unique and increasing", async () => {
        const cat = uniqueCategory();
        const results = await Promise.all(
          Array.from({ length: 50 }, (_, i) => store.appendToStream(`${cat}-${i}`, [ev("One", { i }), ev("Two", { i })], { expectedRevision: "no_stream" })),
        );
        const lastPositions = results.map((r) => r.position);
        expect(new Set(lastPositions).size).toBe(50);
        const read = await collect(store.readAll({ filter: { streamPrefixes: [`${cat}-`] } }));
        expect(read.length).toBe(100);
        const positions = read.map((e) => e.position);
        expect(new Set(positions).size).toBe(100);
        for (let i = 1; i < positions.length; i++) expect(positions[i - 1]! < positions[i]!).toBe(true);
        // An append's events are contiguous in $all: nothing interleaves inside one atomic append.
        for (let i = 0; i < read.length; i += 2) {
          expect(read[i]!.streamId).toBe(read[i + 1]!.streamId);
          expect([read[i]!.type, read[i + 1]!.type]).toEqual(["One", "Two"]);
        }
        expect(new Set(lastPositions)).toEqual(new Set(read.filter((e) => e.type === "Two").map((e) => e.position)));
      });
    });
  });
}
