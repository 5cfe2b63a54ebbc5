/**
 * The console's reads over whole read models (the auditors' session search, the operators' jobs and
 * counts) are index walks: bun:sqlite is synchronous, so a full scan or a sort of a big table would stall
 * every request of the process. Each query is captured as the function runs it and checked with EXPLAIN
 * QUERY PLAN against the projections' own schemas; a few rows check the answers keep their order.
 */
import { Database } from "bun:sqlite";
import { describe, expect, test } from "bun:test";
import { jobsProjection } from "../../projections/jobs/index.ts";
import { jobCountsByStatus, listJobsForOperators, unfinishedJobCounts } from "../../projections/jobs/operators.ts";
import { sessionsProjection } from "../../projections/sessions/index.ts";
import { searchSessions } from "../../projections/sessions/search.ts";

function readModels(): Database {
  const db = new Database(":memory:");
  db.exec(sessionsProjection.schema);
  db.exec(jobsProjection.schema);
  return db;
}

/** The query plan of every statement `run` executes, as SQLite details (one string per statement). */
function plansOf(run: (db: Database) => unknown): string[] {
  const db = readModels();
  const plans: string[] = [];
  const query = db.query.bind(db);
  const explain = (sql: string, params: unknown[]) =>
    (query(`EXPLAIN QUERY PLAN ${sql}`).all(...(params as never[])) as Array<{ detail: string }>).map((r) => r.detail).join(" | ");
  (db as { query: unknown }).query = (sql: string) => {
    const statement = query(sql);
    return new Proxy(statement, {
      get(target, key) {
        const value = Reflect.get(target, key);
        if (key !== "all" && key !== "get") return typeof value === "function" ? value.bind(target) : value;
        return (...params: unknown[]) => {
          plans.push(explain(sql, params));
          return value.apply(target, params);
        };
      },
    });
  };
  run(db);
  expect(plans.length).toBeGreaterThan(0);
  return plans;
}

/** Neither a walk of the whole table nor a sort: the plan reads an index in the order asked. */
function expectIndexWalk(plan: string): void {
  expect(plan).not.toContain("TEMP B-TREE");
  expect(plan).not.toMatch(/SCAN (sessions|jobs)( |$)(?!USING)/);
  expect(plan).toMatch(/USING (COVERING )?INDEX|USING PRIMARY KEY/);
}

describe("the auditors' session search", () => {
  const after = { seq: 1000, id: "sess_x" };
  test.each([
    ["newest sessions of an app", {}],
    ["by user", { userId: "customer-1" }],
    ["by external ref", { externalRef: "ticket-1" }],
    ["by id", { sessionId: "sess_1" }],
  ] as const)("%s: an index walk, first page and next", (_, filter) => {
    for (const plan of plansOf((db) => searchSessions(db, "app_default", filter, 21))) expectIndexWalk(plan);
    for (const plan of plansOf((db) => searchSessions(db, "app_default", filter, 21, after))) expectIndexWalk(plan);
  });

  test("deleted sessions included, newest created first, paged by (created_seq, id)", () => {
    const db = readModels();
    const insert = db.query(`INSERT INTO sessions (id, app_id, agent_id, user_id, name, metadata, deleted, created_at, updated_at, last_activity_at, activity_seq, created_seq)
      VALUES (?, ?, 'agent', ?, '', '{}', ?, 0, 0, 0, ?, ?)`);
    for (let i = 1; i <= 6; i++) insert.run(`sess_${i}`, i === 4 ? "app_other" : "app_default", i % 2 ? "u1" : "u2", i === 3 ? 1 : 0, 100 - i, i);
    const ids = (rows: Array<{ id: string }>) => rows.map((r) => r.id);
    expect(ids(searchSessions(db, "app_default", {}, 3))).toEqual(["sess_6", "sess_5", "sess_3"]);
    expect(ids(searchSessions(db, "app_default", {}, 3, { seq: 3, id: "sess_3" }))).toEqual(["sess_2", "sess_1"]);
    expect(ids(searchSessions(db, "app_default", { userId: "u1" }, 10))).toEqual(["sess_5", "sess_3", "sess_1"]);
  });
});

describe("the operators' jobs", () => {
  test.each([
    ["every job", {}],
    ["of one status", { status: "failed" }],
    ["of one app", { appId: "app_default" }],
    ["of one status and app", { status: "failed", appId: "app_default" }],
  ] as const)("%s, newest first: an index walk, first page and next", (_, filter) => {
    for (const plan of plansOf((db) => listJobsForOperators(db, filter, 51))) expectIndexWalk(plan);
    for (const plan of plansOf((db) => listJobsForOperators(db, filter, 51, 1000))) expectIndexWalk(plan);
  });

  test("counts by status read the status index only; the unfinished counts the partial index of jobs in flight", () => {
    expect(plansOf((db) => jobCountsByStatus(db))).toEqual(["SCAN jobs USING COVERING INDEX jobs_by_status"]);
    const [unfinished] = plansOf((db) => unfinishedJobCounts(db));
    expect(unfinished).toBe("SEARCH jobs USING COVERING INDEX jobs_unfinished (status=?)");
  });

  test("the answers: counts per status, and jobs newest first, paged by seq", () => {
    const db = readModels();
    const insert = db.query(`INSERT INTO jobs (id, app_id, kind, agent_id, user_id, status, input, created_at, updated_at, seq)
      VALUES (?, ?, 'message', 'agent', 'u', ?, '{}', 0, 0, ?)`);
    const statuses = ["completed", "failed", "pending", "completed", "processing", "completed"];
    statuses.forEach((status, i) => insert.run(`job_${i}`, i === 1 ? "app_other" : "app_default", status, i + 1));
    expect(jobCountsByStatus(db)).toEqual({ pending: 1, processing: 1, awaiting_approval: 0, completed: 3, failed: 1, cancelled: 0 });
    expect(unfinishedJobCounts(db)).toEqual({ pending: 1, processing: 1, awaiting_approval: 0 });
    const ids = (rows: Array<{ id: string }>) => rows.map((r) => r.id);
    expect(ids(listJobsForOperators(db, {}, 2))).toEqual(["job_5", "job_4"]);
    expect(ids(listJobsForOperators(db, {}, 10, 5))).toEqual(["job_3", "job_2", "job_1", "job_0"]);
    expect(ids(listJobsForOperators(db, { status: "completed" }, 10))).toEqual(["job_5", "job_3", "job_0"]);
    expect(ids(listJobsForOperators(db, { appId: "app_other" }, 10))).toEqual(["job_1"]);
  });
});
