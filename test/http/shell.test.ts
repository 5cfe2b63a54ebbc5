import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Elysia, t } from "elysia";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, loadConfig, readModelFileOf } from "../../src/config.ts";
import { ValidationError } from "../../src/core/errors.ts";
import { silentLogger } from "../../src/core/logger.ts";
import { EsdbEventStore } from "../../src/eventstore/adapters/esdb.ts";
import { createApp } from "../../src/http/app.ts";
import { openReadModelDb } from "../../src/projections/readModelDb.ts";
import { ProjectionRunner } from "../../src/projections/runner.ts";
import { json, startTestServer, type TestServer } from "../support/server.ts";

/** A route module exercising the global error handling the real routes rely on. */
const probe = new Elysia({ name: "test.probe" })
  .post("/probe", ({ body }) => ({ echoed: body.name }), {
    body: t.Object({ name: t.String({ minLength: 1 }), count: t.Optional(t.Integer({ minimum: 0 })) }),
  })
  .get("/probe/rule", () => {
    throw new ValidationError("limit must be at most 100", { param: "limit" });
  })
  .get("/probe/bug", () => {
    throw new Error("secret internal detail");
  })
  .get("/probe/slow", async () => {
    await Bun.sleep(400);
    return { done: true };
  });

describe("server shell", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({}, { plugins: [probe] });
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("GET /health reports the store and each projection", async () => {
    const res = await fetch(`${server.url}/health`);
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body).toMatchObject({ status: "ok", store: { kind: "sqlite", ok: true } });
    expect(body.projections.map((p: { name: string }) => p.name)).toContain("stream_catalog");
    expect(res.headers.get("x-request-id")).toBeTruthy();
  });

  test("/docs serves the OpenAPI UI and /docs/json the document", async () => {
    const ui = await fetch(`${server.url}/docs`);
    expect(ui.status).toBe(200);
    expect(ui.headers.get("content-type")).toContain("text/html");
    const doc = await json(await fetch(`${server.url}/docs/json`));
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths)).toContain("/health");
  });

  test("docs/api.md names every /v1 operation of the OpenAPI document", async () => {
    const doc = (await (await fetch(`${server.url}/docs/json`)).json()) as any;
    // Path parameters are written {id}, {name}, … in the guide: compare with every parameter blanked.
    const blank = (text: string) => text.replace(/\{[^}]*\}/g, "{}");
    const guide = blank(await Bun.file(new URL("../../docs/api.md", import.meta.url)).text());
    const missing: string[] = [];
    for (const [path, ops] of Object.entries<any>(doc.paths)) {
      if (!path.startsWith("/v1")) continue;
      for (const method of Object.keys(ops)) {
        const named = `${method.toUpperCase()} ${blank(path)}`;
        if (!new RegExp(`${named.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?![\\w/{])`).test(guide)) missing.push(named);
      }
    }
    expect(missing).toEqual([]);
  });

  test("every /v1 operation declares its success response as a named model (or an SSE stream of them)", async () => {
    const doc = (await (await fetch(`${server.url}/docs/json`)).json()) as any;
    const undeclared: string[] = [];
    for (const [path, ops] of Object.entries<any>(doc.paths)) {
      if (!path.startsWith("/v1")) continue;
      for (const [method, op] of Object.entries<any>(ops)) {
        const named = Object.entries<any>(op.responses ?? {}).some(([code, r]) =>
          code.startsWith("2") && Object.values<any>(r.content ?? {}).some((c) => typeof c.schema?.$ref === "string" && c.schema.$ref.startsWith("#/components/schemas/")));
        if (!named) undeclared.push(`${method.toUpperCase()} ${path}`);
      }
    }
    expect(undeclared).toEqual([]);
    expect(Object.keys(doc.components.schemas)).toEqual(expect.arrayContaining(["Session", "Job", "JobEvents", "PublicEvent", "Error"]));
  });

  test("an unknown route answers 404 in the envelope (401 first under /v1 without a key)", async () => {
    const res = await fetch(`${server.url}/v1/nothing-here`, { headers: { "x-api-key": server.apiKey } });
    expect(res.status).toBe(404);
    expect(await json(res)).toEqual({ error: { code: "not_found", message: "No such route", request_id: res.headers.get("x-request-id")! } });
    const outside = await fetch(`${server.url}/nothing-here`);
    expect(outside.status).toBe(404);
    const anonymous = await fetch(`${server.url}/v1/nothing-here`);
    expect(anonymous.status).toBe(401);
  });

  test("malformed JSON answers 400 invalid_json, never 500", async () => {
    const res = await fetch(`${server.url}/probe`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"name": "x",' });
    expect(res.status).toBe(400);
    expect((await json(res)).error.code).toBe("invalid_json");
  });

  test("schema violations answer 400 invalid_request naming the parameter", async () => {
    const res = await fetch(`${server.url}/probe`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "a", count: -1 }) });
    expect(res.status).toBe(400);
    const body = await json(res);
    expect(body.error.code).toBe("invalid_request");
    expect(body.error.details.param).toBe("count");
    const missing = await fetch(`${server.url}/probe`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect((await json(missing)).error.details.param).toBe("name");
  });

  test("typed rule violations keep their code; unexpected errors are 500 without internals", async () => {
    const rule = await fetch(`${server.url}/probe/rule`, { headers: { "x-request-id": "req-from-client" } });
    expect(rule.status).toBe(400);
    expect(await json(rule)).toEqual({ error: { code: "invalid_request", message: "limit must be at most 100", details: { param: "limit" }, request_id: "req-from-client" } });
    const bug = await fetch(`${server.url}/probe/bug`);
    expect(bug.status).toBe(500);
    const text = await bug.text();
    expect(JSON.parse(text).error.code).toBe("internal_error");
    // Every error names its request, the id sent back in x-request-id.
    expect(JSON.parse(text).error.request_id).toBe(bug.headers.get("x-request-id")!);
    expect(text).not.toContain("secret internal detail");
  });

  test("valid requests pass through", async () => {
    const res = await fetch(`${server.url}/probe`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "ok" }) });
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({ echoed: "ok" });
  });
});

describe("health when the store is down", () => {
  test("GET /health answers 503 with the store's error", async () => {
    // Nothing listens on port 1: every call to this store fails.
    const store = new EsdbEventStore({ connectionString: "esdb://127.0.0.1:1?tls=false" });
    const db = openReadModelDb(":memory:");
    const runner = new ProjectionRunner(store, db, []);
    const app = createApp({ store, runner, logger: silentLogger, version: "test" });
    const res = await app.handle(new Request("http://local/health"));
    expect(res.status).toBe(503);
    const body = await json(res);
    expect(body).toMatchObject({ status: "unavailable", store: { kind: "esdb", ok: false } });
    expect(typeof body.store.error).toBe("string");
    await store.close();
    db.close();
  });
});

describe("graceful shutdown", () => {
  test("in-flight requests finish, new connections are refused, the read-model lock is released", async () => {
    const server = await startTestServer({}, { plugins: [probe] });
    const inFlight = fetch(`${server.url}/probe/slow`);
    await Bun.sleep(50);
    const stopping = server.shutdown("test");
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({ done: true });
    await stopping;
    const refused = await fetch(`${server.url}/health`).then(() => "answered", () => "refused");
    expect(refused).toBe("refused");
    expect(existsSync(join(server.dataDir, "readmodels.sqlite.pid"))).toBe(false);
    await server.stop();
  });

  test("SIGTERM stops the real process cleanly", async () => {
    const { mkdtempSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const dataDir = mkdtempSync(join(tmpdir(), "agentry-proc-"));
    const child = Bun.spawn(["bun", "src/main.ts"], { env: { ...process.env, PORT: "0", DATA_DIR: dataDir }, stdout: "pipe", stderr: "pipe" });
    const reader = child.stdout.getReader();
    let out = "";
    while (!out.includes("agentry listening")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += new TextDecoder().decode(value);
    }
    const url = JSON.parse(out.split("\n").find((l) => l.includes("agentry listening"))!).url;
    expect((await fetch(`${url}/health`)).status).toBe(200);
    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out += new TextDecoder().decode(value);
    }
    expect(out).toContain('"msg":"stopped"');
  });
});

describe("configuration", () => {
  test("the read-model file is per process when READ_MODEL_FILE is set, the data folder's otherwise", () => {
    expect(readModelFileOf(loadConfig({ DATA_DIR: "/d" }))).toBe("/d/readmodels.sqlite");
    expect(readModelFileOf(loadConfig({ DATA_DIR: "/d", READ_MODEL_FILE: "/d/rm-worker1.sqlite" }))).toBe("/d/rm-worker1.sqlite");
  });

  test("defaults apply when the environment is empty", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ port: 8080, eventStore: "sqlite", dataDir: "./data", sqliteSynchronous: "full" });
  });

  test("a bad value stops start-up with a message naming the variable", () => {
    for (const [env, variable] of [
      [{ PORT: "eighty" }, "PORT"],
      [{ PORT: "70000" }, "PORT"],
      [{ EVENT_STORE: "postgres" }, "EVENT_STORE"],
      [{ EVENT_STORE: "esdb" }, "EVENTSTORE_CONNECTION_STRING"],
      [{ SQLITE_SYNCHRONOUS: "off" }, "SQLITE_SYNCHRONOUS"],
      [{ LOG_LEVEL: "loud" }, "LOG_LEVEL"],
      [{ ROLE: "worker" }, "REDIS_URL"],
      [{ ROLE: "api", REDIS_URL: "redis://x", EVENT_STORE: "memory" }, "EVENT_STORE"],
      [{ REDIS_URL: "http://not-redis" }, "REDIS_URL"],
      [{ LLM_PROVIDER: "openai" }, "LLM_API_KEY"],
      [{ LLM_PROVIDER: "gemini" }, "LLM_PROVIDER"],
      [{ JOB_LEASE_MS: "5" }, "JOB_LEASE_MS"],
    ] as const) {
      const err = (() => { try { loadConfig(env); } catch (e) { return e; } })();
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).variable).toBe(variable);
      expect((err as ConfigError).message).toContain(variable);
    }
  });

  test("the process exits with code 2 and names the variable", async () => {
    const child = Bun.spawn(["bun", "src/main.ts"], { env: { ...process.env, PORT: "nope" }, stdout: "pipe", stderr: "pipe" });
    expect(await child.exited).toBe(2);
    expect(await new Response(child.stderr).text()).toContain("PORT");
  });
});
