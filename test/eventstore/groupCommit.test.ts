/**
 * Group commit in the SQLite store: concurrent appends share one transaction (and one fsync) while each
 * keeps its own expected-revision check and result.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { newEventId } from "../../src/core/ids.ts";
import { SqliteEventStore } from "../../src/eventstore/adapters/sqlite.ts";
import { StoreUnavailableError, WrongExpectedVersionError } from "../../src/eventstore/errors.ts";
import { collect, type RecordedEvent } from "../../src/eventstore/port.ts";

const dirs: string[] = [];
const stores: SqliteEventStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const open = (dir = mkdtempSync(join(tmpdir(), "agentry-group-"))) => {
  if (!dirs.includes(dir)) dirs.push(dir);
  const store = new SqliteEventStore({ path: join(dir, "events.sqlite"), synchronous: "full" });
  stores.push(store);
  return { store, dir };
};
const event = (type = "Happened", id = newEventId()) => ({ id, type, data: { n: 1 } });

test("concurrent appends are committed together: fewer transactions than appends, every result its own", async () => {
  const { store } = open();
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) => store.appendToStream(`s-${i}`, [event()], { expectedRevision: "no_stream" })));
  expect(results.every((r) => r.nextExpectedRevision === 0n)).toBe(true);
  expect(new Set(results.map((r) => r.position)).size).toBe(50);
  expect(store.appendStats).toEqual({ commits: 1, appends: 50 });
});

test("a conflict in a group fails only its own append", async () => {
  const { store } = open();
  await store.appendToStream("shared", [event()]);
  const outcomes = await Promise.allSettled([
    store.appendToStream("a", [event()]),
    store.appendToStream("shared", [event()], { expectedRevision: 7n }), // wrong
    store.appendToStream("b", [event()]),
  ]);
  expect(outcomes.map((o) => o.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
  expect((outcomes[1] as PromiseRejectedResult).reason).toBeInstanceOf(WrongExpectedVersionError);
  expect((await collect(store.readStream("shared"))).length).toBe(1);
  expect((await collect(store.readStream("a"))).length).toBe(1);
});

test("two appends to one stream in a group see each other; a retried batch in the same group is not written twice", async () => {
  const { store } = open();
  const retried = [event("First"), event("Second")];
  const [first, second, retry] = await Promise.all([
    store.appendToStream("one", retried, { expectedRevision: "no_stream" }),
    store.appendToStream("one", [event("Third")], { expectedRevision: 1n }),
    store.appendToStream("one", retried, { expectedRevision: "no_stream" }),
  ]);
  expect(first.nextExpectedRevision).toBe(1n);
  expect(second.nextExpectedRevision).toBe(2n);
  expect(retry).toEqual(first);
  expect((await collect(store.readStream("one"))).map((e) => e.type)).toEqual(["First", "Second", "Third"]);
});

test("a group that cannot commit answers every append with an error and stores none of them", async () => {
  const { store, dir } = open();
  const appends = Array.from({ length: 5 }, (_, i) => store.appendToStream(`lost-${i}`, [event()]));
  await store.close(); // before the group's commit runs
  const outcomes = await Promise.allSettled(appends);
  expect(outcomes.every((o) => o.status === "rejected" && o.reason instanceof StoreUnavailableError)).toBe(true);
  const { store: reopened } = open(dir);
  expect(await reopened.headPosition()).toBeNull();
});

describe("subscriptions following this process's appends", () => {
  /** Reads `count` events from a subscription, bounded in time. */
  async function take(sub: { nextBatch(max: number): Promise<RecordedEvent[]> }, count: number) {
    const got: RecordedEvent[] = [];
    const deadline = Date.now() + 5000;
    while (got.length < count && Date.now() < deadline) got.push(...(await Promise.race([sub.nextBatch(100), Bun.sleep(200).then(() => [])])));
    return got;
  }

  test("see every event in position order when another process appends in between, filtered or not", async () => {
    const { store, dir } = open();
    const other = new SqliteEventStore({ path: join(dir, "events.sqlite"), synchronous: "full", pollIntervalMs: 20 });
    stores.push(other);
    const all = store.subscribeToAll({ fromPosition: "start" });
    const onlyOthers = store.subscribeToAll({ fromPosition: "start", filter: { eventTypes: ["FromOther"] } });
    await store.appendToStream("mine", [event("Mine"), event("Mine")]);
    await other.appendToStream("theirs", [event("FromOther")]);
    await store.appendToStream("mine", [event("Mine")]);
    await other.appendToStream("theirs", [event("FromOther")]);
    await store.appendToStream("mine", [event("Mine")]);
    const seen = await take(all, 6);
    expect(seen.map((e) => [Number(e.position), e.type])).toEqual([[1, "Mine"], [2, "Mine"], [3, "FromOther"], [4, "Mine"], [5, "FromOther"], [6, "Mine"]]);
    const filtered = await take(onlyOthers, 2);
    expect(filtered.map((e) => Number(e.position))).toEqual([3, 5]);
    // What the subscription delivered is what the store holds.
    const stored = await collect(store.readAll());
    expect(seen.map((e) => [e.id, e.streamId, e.revision, e.data])).toEqual(stored.map((e) => [e.id, e.streamId, e.revision, e.data]));
    await all.unsubscribe();
    await onlyOthers.unsubscribe();
  });

  test("a filtered subscription whose matches all come from another process still sees them", async () => {
    const { store, dir } = open();
    const other = new SqliteEventStore({ path: join(dir, "events.sqlite"), synchronous: "full" });
    stores.push(other);
    const onlyOthers = store.subscribeToAll({ fromPosition: "start", filter: { eventTypes: ["FromOther"] } });
    await store.appendToStream("mine", [event("Mine"), event("Mine")]);
    await Bun.sleep(150); // the subscription has read past this process's events, matching none
    await other.appendToStream("theirs", [event("FromOther")]);
    expect((await take(onlyOthers, 1)).map((e) => Number(e.position))).toEqual([3]);
    await onlyOthers.unsubscribe();
  });

  test("the run of recent appends is bounded in bytes: big events push old ones out, and readers fall back to the store", async () => {
    const { store } = open();
    const all = store.subscribeToAll({ fromPosition: "start" });
    const big = () => ({ id: newEventId(), type: "Big", data: { blob: "x".repeat(900_000) } });
    for (let i = 0; i < 30; i++) await store.appendToStream(`big-${i}`, [big()]);
    expect(store.recentHeld.bytes).toBeLessThanOrEqual(16 * 1024 * 1024);
    expect(store.recentHeld.events).toBeLessThan(30);
    expect((await take(all, 30)).map((e) => Number(e.position))).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    await all.unsubscribe();
  });
});

