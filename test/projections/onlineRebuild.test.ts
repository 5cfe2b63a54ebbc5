/**
 * Online rebuilds at the runner: a read model rebuilt into a shadow while writes keep coming swaps in
 * equal to a from-scratch fold, reads never see it half-built, and a stop mid-rebuild leaves the live
 * tables as they were.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { projections } from "../../projections/index.ts";
import { SqliteEventStore } from "../../src/eventstore/adapters/sqlite.ts";
import type { EventStore, RecordedEvent } from "../../src/eventstore/port.ts";
import type { Projection } from "../../src/projections/projection.ts";
import { dumpTables, openReadModelDb } from "../../src/projections/readModelDb.ts";
import { RebuildInProgressError, ProjectionRunner, UnknownProjectionError } from "../../src/projections/runner.ts";

/** Counts deposits per account: every total only ever grows, so a read that goes down saw a half-built table. */
const deposits: Projection = {
  name: "deposits",
  version: 1,
  eventTypes: ["Deposited"],
  tables: ["deposit_totals"],
  schema: "CREATE TABLE IF NOT EXISTS deposit_totals (account TEXT PRIMARY KEY, total INTEGER NOT NULL, ops INTEGER NOT NULL)",
  apply(db: Database, e: RecordedEvent) {
    db.query(
      `INSERT INTO deposit_totals (account, total, ops) VALUES (?1, ?2, 1)
       ON CONFLICT(account) DO UPDATE SET total = total + ?2, ops = ops + 1`,
    ).run(e.streamId, (e.data as { amount: number }).amount);
  },
};
const all = [...projections, deposits];
const allTables = all.flatMap((p) => p.tables);

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function setup(): { dir: string; store: EventStore; db: Database; runner: ProjectionRunner } {
  const dir = mkdtempSync(join(tmpdir(), "agentry-online-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const store = new SqliteEventStore({ path: join(dir, "events.sqlite"), synchronous: "normal" });
  cleanups.push(() => store.close());
  const db = openReadModelDb(join(dir, "readmodels.sqlite"));
  cleanups.push(() => db.close());
  const runner = new ProjectionRunner(store, db, all, { batchSize: 300, rebuildBatchSize: 250 });
  cleanups.push(() => runner.stop());
  runner.start();
  return { dir, store, db, runner };
}

async function deposit(store: EventStore, count: number, offset = 0): Promise<void> {
  for (let i = 0; i < count; i += 20) {
    const batch = Array.from({ length: Math.min(20, count - i) }, (_, k) => ({
      id: crypto.randomUUID(), type: "Deposited", data: { amount: ((offset + i + k) % 7) + 1 },
    }));
    await store.appendToStream(`account-${(offset + i) % 37}`, batch);
  }
}

const totalOps = (db: Database) => (db.query("SELECT coalesce(sum(ops), 0) AS n FROM deposit_totals").get() as { n: number }).n;

describe("online projection rebuild", () => {
  test("a rebuild under concurrent writes swaps in tables equal to a from-scratch fold, and reads never go backwards", async () => {
    const { dir, store, db, runner } = setup();
    await deposit(store, 6000);
    await runner.waitUntilCaughtUp();

    // A writer keeps appending while the rebuild runs; a reader checks every tick that nothing shrinks.
    let writing = true;
    let written = 6000;
    const writer = (async () => {
      while (writing && written < 30_000) {
        await deposit(store, 40, written);
        written += 40;
        await Bun.sleep(1);
      }
    })();
    let lowest = Infinity;
    let previous = totalOps(db);
    let wentBack = 0;
    let reads = 0;
    const reader = setInterval(() => {
      const now = totalOps(db);
      if (now < previous) wentBack++;
      lowest = Math.min(lowest, now);
      previous = now;
      reads++;
    }, 1);

    const started = runner.rebuild("deposits");
    expect(started).toMatchObject({ object: "projection.rebuild", projection: "deposits", reason: "requested", state: "running" });
    expect(() => runner.rebuild("deposits")).toThrow(RebuildInProgressError);
    expect(() => runner.rebuild("no_such_projection")).toThrow(UnknownProjectionError);
    // A shadow file sits beside the read models while it runs.
    expect(readdirSync(dir).some((n) => n.startsWith("readmodels.sqlite.rebuild-deposits-"))).toBe(true);
    // Progress is reported while it runs, between 0 and 1, with an estimate of the events in all.
    const seen: number[] = [];
    while (runner.rebuildOf("deposits")!.state === "running") {
      seen.push(runner.rebuildOf("deposits")!.progress);
      await Bun.sleep(2);
    }
    const done = await runner.whenRebuilt("deposits");
    writing = false;
    await writer;
    clearInterval(reader);
    expect(done).toMatchObject({ state: "done", progress: 1, error: null });
    expect(done!.processed_events).toBeGreaterThanOrEqual(6000);
    expect(done!.total_events).toBe(done!.processed_events);
    expect(seen.some((p) => p > 0 && p < 1)).toBe(true);
    expect(readdirSync(dir).some((n) => n.includes(".rebuild-"))).toBe(false);
    expect(reads).toBeGreaterThan(10);
    expect(wentBack).toBe(0);
    expect(lowest).toBeGreaterThanOrEqual(6000);

    // After the writes stop, the swapped tables equal every other read model built from scratch.
    await runner.waitUntilCaughtUp();
    expect(totalOps(db)).toBe(written);
    const fresh = openReadModelDb(":memory:");
    cleanups.push(() => fresh.close());
    const scratch = new ProjectionRunner(store, fresh, all);
    cleanups.push(() => scratch.stop());
    scratch.start();
    await scratch.waitUntilCaughtUp();
    expect(dumpTables(db, allTables)).toEqual(dumpTables(fresh, allTables));
  }, 60_000);

  test("a version rebuild that fails is tried again until it swaps in; until then the projection stays frozen", async () => {
    const { store, db, runner } = setup();
    await deposit(store, 200);
    await runner.waitUntilCaughtUp();
    const before = dumpTables(db, ["deposit_totals"]);
    await runner.stop();
    let failures = 1;
    const v2: Projection = {
      ...deposits, version: 2,
      apply(d, e) {
        if (failures > 0) {
          failures--;
          throw new Error("the disk is full");
        }
        deposits.apply(d, e);
      },
    };
    const next = new ProjectionRunner(store, db, [...projections, v2]);
    cleanups.push(() => next.stop());
    next.start();
    expect(next.rebuildingAtStart).toEqual(["deposits"]);
    await next.whenRebuilt("deposits");
    expect(next.rebuildOf("deposits")).toMatchObject({ state: "failed", error: "the disk is full" });
    expect(next.rebuildingAtStart).toEqual(["deposits"]);
    await next.whenReady(); // the retry, a second later
    expect(next.rebuildingAtStart).toEqual([]);
    expect(next.rebuildOf("deposits")?.state).toBe("done");
    expect(dumpTables(db, ["deposit_totals"])).toEqual(before);
  }, 30_000);

  test("a version rebuild that fails every time is given up after a few tries: not ready, reported, and a requested rebuild can still fix it", async () => {
    const { store, db, runner } = setup();
    await deposit(store, 50);
    await runner.waitUntilCaughtUp();
    await runner.stop();
    let broken = true;
    let attempts = 0;
    const v2: Projection = { ...deposits, version: 2, apply(d, e) { if (broken) { attempts++; throw new Error("a bug in the fold"); } deposits.apply(d, e); } };
    const next = new ProjectionRunner(store, db, [...projections, v2], { versionRetryBaseMs: 1 });
    cleanups.push(() => next.stop());
    next.start();
    for (let i = 0; i < 2000 && (await next.status()).find((s) => s.name === "deposits")!.state !== "error"; i++) await Bun.sleep(5);
    const status = (await next.status()).find((s) => s.name === "deposits")!;
    expect(status).toMatchObject({ state: "error" });
    expect(status.last_error).toContain("failed 8 times: a bug in the fold");
    expect(attempts).toBe(9); // the first try and eight more
    await Bun.sleep(50);
    expect(attempts).toBe(9); // and no more
    expect(next.rebuildingAtStart).toEqual(["deposits"]);
    broken = false;
    next.rebuild("deposits");
    await next.whenReady();
    expect((await next.status()).find((s) => s.name === "deposits")).toMatchObject({ state: "live", last_error: null });
  }, 30_000);

  test("a projection new to an existing read-model file is built in the background; read-your-writes does not wait for it", async () => {
    const { store, db, runner } = setup();
    await deposit(store, 300);
    await runner.waitUntilCaughtUp();
    await runner.stop();
    const audit: Projection = { ...deposits, name: "deposit_audit", tables: ["deposit_audit"], schema: deposits.schema.replaceAll("deposit_totals", "deposit_audit"),
      apply: (d, e) => d.query("INSERT INTO deposit_audit (account, total, ops) VALUES (?1, ?2, 1) ON CONFLICT(account) DO UPDATE SET total = total + ?2, ops = ops + 1")
        .run(e.streamId, (e.data as { amount: number }).amount) };
    const next = new ProjectionRunner(store, db, [...projections, deposits, audit]);
    cleanups.push(() => next.stop());
    next.start();
    expect(next.rebuildingAtStart).toEqual(["deposit_audit"]);
    // Its tables exist (empty) at once, and a write is read back by the live ones without waiting for it.
    expect(db.query("SELECT count(*) AS n FROM deposit_audit").get()).toEqual({ n: 0 });
    const written = await store.appendToStream("account-new", [{ id: crypto.randomUUID(), type: "Deposited", data: { amount: 5 } }]);
    await next.waitForPosition(written.position, 5000);
    await next.whenReady();
    await next.waitUntilCaughtUp();
    const totals = db.query("SELECT account, total, ops FROM deposit_totals ORDER BY account").all();
    expect(db.query("SELECT account, total, ops FROM deposit_audit ORDER BY account").all()).toEqual(totals);
  }, 30_000);

  test("with every projection rebuilding, waiting for the store's head still ends", async () => {
    const { store, db, runner } = setup();
    await deposit(store, 300);
    await runner.waitUntilCaughtUp();
    await runner.stop();
    const next = new ProjectionRunner(store, db, [{ ...deposits, version: 9 }]);
    cleanups.push(() => next.stop());
    next.start();
    expect(next.rebuildingAtStart).toEqual(["deposits"]);
    await next.waitUntilCaughtUp(10_000);
    await next.whenReady();
  }, 30_000);

  test("a stop mid-rebuild leaves the live tables as they were and removes the shadow; a start removes stale shadows", async () => {
    const { dir, store, db, runner } = setup();
    await deposit(store, 20_000);
    await runner.waitUntilCaughtUp();
    const before = dumpTables(db, ["deposit_totals"]);
    runner.rebuild("deposits");
    await Bun.sleep(5);
    await runner.stop();
    expect(runner.rebuildOf("deposits")?.state).toBe("failed");
    expect(dumpTables(db, ["deposit_totals"])).toEqual(before);
    expect(readdirSync(dir).some((n) => n.includes(".rebuild-"))).toBe(false);

    // A killed process's shadow is thrown away by the next start.
    const stale = join(dir, "readmodels.sqlite.rebuild-deposits-999-x");
    writeFileSync(stale, "left by a killed process");
    const next = new ProjectionRunner(store, db, all);
    cleanups.push(() => next.stop());
    next.start();
    expect(existsSync(stale)).toBe(false);
  }, 60_000);
});
