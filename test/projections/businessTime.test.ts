/** Business time travels in event metadata: read models show when a command happened, not when a store recorded it. */
import { expect, test } from "bun:test";
import { projections } from "../../projections/index.ts";
import { createRepositories } from "../../src/app/context.ts";
import { OCCURRED_AT_KEY } from "../../src/core/eventContract.ts";
import { MemoryEventStore } from "../../src/eventstore/adapters/memory.ts";
import { openReadModelDb } from "../../src/projections/readModelDb.ts";
import { ProjectionRunner } from "../../src/projections/runner.ts";

test("a session's times come from its commands' metadata, so they survive a move to another store", async () => {
  // The store's clock says 2031: a copy of the events made years after they happened.
  const store = new MemoryEventStore(() => new Date("2031-01-01T00:00:00Z"));
  const repos = createRepositories(store);
  const decided = Date.parse("2026-05-01T10:00:00Z");
  await repos.sessions.handle("s1", { type: "StartSession", session_id: "s1", agent_id: "a", user_id: "u", name: "n", external_ref: null, metadata: {} }, { appId: "app_default", now: decided });
  await repos.sessions.handle("s1", { type: "RenameSession", name: "later" }, { appId: "app_default", now: decided + 60_000 });
  for await (const e of store.readStream("session-s1")) expect(typeof e.metadata[OCCURRED_AT_KEY]).toBe("number");

  const db = openReadModelDb(":memory:");
  const runner = new ProjectionRunner(store, db, projections);
  runner.start();
  await runner.waitUntilCaughtUp(5000);
  const row = db.query("SELECT created_at, updated_at FROM sessions WHERE id = 's1'").get() as { created_at: number; updated_at: number };
  expect(row).toEqual({ created_at: decided, updated_at: decided + 60_000 });
  await runner.stop();
  db.close();
});
