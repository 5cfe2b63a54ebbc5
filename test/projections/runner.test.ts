import { afterEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { projections } from "../../projections/index.ts";
import { streamCatalog } from "../../projections/streamCatalog/index.ts";
import { TimeoutError } from "../../src/core/errors.ts";
import { EsdbEventStore } from "../../src/eventstore/adapters/esdb.ts";
import { SqliteEventStore } from "../../src/eventstore/adapters/sqlite.ts";
import { MemoryEventStore } from "../../src/eventstore/adapters/memory.ts";
import type { EventData, EventStore, RecordedEvent } from "../../src/eventstore/port.ts";
import type { Projection } from "../../src/projections/projection.ts";
import { dumpTables, openReadModelDb } from "../../src/projections/readModelDb.ts";
import { ProjectionRunner } from "../../src/projections/runner.ts";
import { spawnEsdbTestServer } from "../support/esdbTestServer.ts";

/** A test projection whose result depends on event order, and that deletes rows, to make equivalence meaningful. */
const ledger: Projection = {
  name: "ledger",
  version: 1,
  eventTypes: ["Deposited", "Withdrawn", "Closed"],
  tables: ["ledger_accounts"],
  schema: `CREATE TABLE IF NOT EXISTS ledger_accounts (
    account TEXT PRIMARY KEY, balance INTEGER NOT NULL, ops INTEGER NOT NULL, fingerprint INTEGER NOT NULL, last_at INTEGER NOT NULL)`,
  apply(db: Database, e: RecordedEvent) {
    const { amount } = e.data as { amount: number };
    if (e.type === "Closed") {
      db.query("DELETE FROM ledger_accounts WHERE account = ?").run(e.streamId);
      return;
    }
    const signed = e.type === "Deposited" ? amount : -amount;
    db.query(
      `INSERT INTO ledger_accounts (account, balance, ops, fingerprint, last_at) VALUES (?1, ?2, 1, ?3, ?4)
       ON CONFLICT(account) DO UPDATE SET balance = balance + ?2, ops = ops + 1,
         fingerprint = (fingerprint * 31 + ?3) % 1000000007, last_at = ?4`,
    ).run(e.streamId, signed, Math.abs(signed) + 1, e.created.getTime());
  },
};

const allProjections = [...projections, ledger];
const allTables = allProjections.flatMap((p) => p.tables);

/** Deterministic pseudo-random numbers so a failure can be replayed. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "agentry-proj-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A fresh store of each kind; esdb is the EventStoreDB protocol test server in its own process. */
async function openStore(kind: "sqlite" | "memory" | "esdb", dir: string): Promise<EventStore> {
  if (kind === "memory") return new MemoryEventStore();
  if (kind === "sqlite") return new SqliteEventStore({ path: join(dir, "events.sqlite"), synchronous: "normal" });
  const server = await spawnEsdbTestServer();
  cleanups.push(() => server.stop());
  return new EsdbEventStore({ connectionString: server.connectionString });
}

function startRunner(store: EventStore, db: Database, list: readonly Projection[] = allProjections) {
  const runner = new ProjectionRunner(store, db, list, { batchSize: 500 });
  cleanups.push(() => runner.stop());
  runner.start();
  return runner;
}

describe("projection runner", () => {
  for (const kind of ["sqlite", "memory", "esdb"] as const) {
    test(`a randomized history of 12,000 events processed live, then rebuilt from scratch, gives identical read models (${kind})`, async () => {
      const dir = tempDir();
      const store = await openStore(kind, dir);
      cleanups.push(() => store.close());
      const liveDb = openReadModelDb(join(dir, "live.sqlite"));
      cleanups.push(() => liveDb.close());
      const live = startRunner(store, liveDb);

      const random = rng(42);
      const types = ["Deposited", "Withdrawn", "Noted", "Renamed"];
      let written = 0;
      const writer = async (w: number) => {
        while (written < 12_000) {
          const kind = random();
          const stream = kind < 0.7 ? `account-${Math.floor(random() * 300)}` : `misc${w}-${Math.floor(random() * 50)}`;
          const count = 1 + Math.floor(random() * 8);
          const events: EventData[] = Array.from({ length: count }, () => ({
            id: crypto.randomUUID(),
            type: random() < 0.02 ? "Closed" : types[Math.floor(random() * types.length)]!,
            data: { amount: Math.floor(random() * 1000) },
          }));
          written += count;
          await store.appendToStream(stream, events);
          if (random() < 0.1) await Bun.sleep(0);
        }
      };
      await Promise.all([writer(0), writer(1), writer(2)]);
      expect(written).toBeGreaterThanOrEqual(12_000);
      await live.waitUntilCaughtUp(60_000);
      const liveDump = dumpTables(liveDb, allTables);
      expect((liveDump.catalog_streams as unknown[]).length).toBeGreaterThan(300);
      expect((liveDump.ledger_accounts as unknown[]).length).toBeGreaterThan(50);
      const totalCounted = (liveDump.catalog_event_types as Array<{ count: number }>).reduce((a, r) => a + r.count, 0);
      expect(totalCounted).toBe(written);

      // From scratch, in a new read-model file.
      const freshDb = openReadModelDb(join(dir, "fresh.sqlite"));
      cleanups.push(() => freshDb.close());
      const fresh = startRunner(store, freshDb);
      await fresh.waitUntilCaughtUp(60_000);
      expect(dumpTables(freshDb, allTables)).toEqual(liveDump);

      // And by resetting the live file in place, as `projections rebuild` does.
      await live.stop();
      const rebuilt = new ProjectionRunner(store, liveDb, allProjections, { batchSize: 777 });
      cleanups.push(() => rebuilt.stop());
      rebuilt.reset();
      rebuilt.start();
      await rebuilt.waitUntilCaughtUp(60_000);
      expect(dumpTables(liveDb, allTables)).toEqual(liveDump);
    }, 60_000);
  }

  test("a restarted runner resumes from its checkpoint without applying anything twice", async () => {
    const dir = tempDir();
    const store = new SqliteEventStore({ path: join(dir, "events.sqlite") });
    cleanups.push(() => store.close());
    const db = openReadModelDb(join(dir, "rm.sqlite"));
    cleanups.push(() => db.close());
    const first = startRunner(store, db);
    for (let i = 0; i < 10; i++) await store.appendToStream("account-a", [{ id: crypto.randomUUID(), type: "Deposited", data: { amount: 10 } }]);
    await first.waitUntilCaughtUp();
    await first.stop();
    for (let i = 0; i < 5; i++) await store.appendToStream("account-a", [{ id: crypto.randomUUID(), type: "Deposited", data: { amount: 1 } }]);
    const second = startRunner(store, db);
    await second.waitUntilCaughtUp();
    expect(db.query("SELECT balance, ops FROM ledger_accounts").get()).toEqual({ balance: 105, ops: 15 });
    expect(db.query("SELECT event_count FROM catalog_streams WHERE stream = 'account-a'").get()).toEqual({ event_count: 15 });
  });

  test("a projection whose version changed rebuilds itself on start", async () => {
    const store = new MemoryEventStore();
    const db = openReadModelDb(":memory:");
    cleanups.push(() => db.close());
    const v1 = startRunner(store, db, [ledger]);
    const r = await store.appendToStream("account-x", [{ id: crypto.randomUUID(), type: "Deposited", data: { amount: 5 } }]);
    await v1.waitForPosition(r.position);
    await v1.stop();
    // Tamper with the read model; a version bump must throw this away and rebuild from the events.
    db.exec("UPDATE ledger_accounts SET balance = 999");
    const v2 = startRunner(store, db, [{ ...ledger, version: 2 }]);
    // Rebuilt in the background: start does not wait, and the old tables serve until the swap.
    expect((await v2.status())[0]!.state).toBe("rebuilding");
    expect(db.query("SELECT balance FROM ledger_accounts").get()).toEqual({ balance: 999 });
    expect((await v2.whenRebuilt("ledger"))?.state).toBe("done");
    expect((await v2.status())[0]!.state).toBe("live");
    expect(db.query("SELECT balance FROM ledger_accounts").get()).toEqual({ balance: 5 });
    expect(db.query("SELECT version FROM projection_checkpoints WHERE name = 'ledger'").get()).toEqual({ version: 2 });
  });

  test("read-your-writes: waitForPosition resolves once the write is projected, and times out clearly when it cannot be", async () => {
    const store = new MemoryEventStore();
    const db = openReadModelDb(":memory:");
    cleanups.push(() => db.close());
    const runner = startRunner(store, db);
    const r = await store.appendToStream("account-y", [{ id: crypto.randomUUID(), type: "Deposited", data: { amount: 7 } }]);
    await runner.waitForPosition(r.position, 2000);
    expect(db.query("SELECT balance FROM ledger_accounts WHERE account = 'account-y'").get()).toEqual({ balance: 7 });
    await runner.stop();
    const later = await store.appendToStream("account-y", [{ id: crypto.randomUUID(), type: "Deposited", data: { amount: 1 } }]);
    const err = await runner.waitForPosition(later.position, 50).catch((e) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(err.code).toBe("read_model_timeout");
  });

  test("a failing projection rolls back its batch, reports the error, and recovers without losing events", async () => {
    const store = new MemoryEventStore();
    const db = openReadModelDb(":memory:");
    cleanups.push(() => db.close());
    let broken = true;
    const flaky: Projection = { ...ledger, name: "flaky", apply(d, e) {
      if (broken && (e.data as { amount: number }).amount === 13) throw new Error("cannot project 13");
      ledger.apply(d, e);
    } };
    const runner = new ProjectionRunner(store, db, [streamCatalog, flaky], { batchSize: 100 });
    cleanups.push(() => runner.stop());
    runner.start();
    await store.appendToStream("account-z", [1, 13, 2].map((amount) => ({ id: crypto.randomUUID(), type: "Deposited", data: { amount } })));
    for (let i = 0; i < 100 && runner.currentState !== "error"; i++) await Bun.sleep(10);
    const status = await runner.status();
    expect(status.find((s) => s.name === "flaky")).toMatchObject({ state: "error", last_error: "cannot project 13", checkpoint: null, lag_events: 3 });
    // The transaction rolled back for every projection: the catalog did not advance alone.
    expect(db.query("SELECT count(*) AS n FROM catalog_streams").get()).toEqual({ n: 0 });
    broken = false;
    await runner.waitUntilCaughtUp(10_000);
    expect(db.query("SELECT balance, ops FROM ledger_accounts").get()).toEqual({ balance: 16, ops: 3 });
    const after = await runner.status();
    expect(after.every((s) => s.lag_events === 0 && s.lag_ms === 0 && s.last_error === null)).toBe(true);
  });
});
