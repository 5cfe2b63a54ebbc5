/**
 * Polling the Mosoo event log with `after`: a poll reads what its page needs (not the rest of the
 * Thread and every run in it), a poller following `next_after` still sees every event once, and an
 * `after` the log never gave is refused rather than answered with a cursor that stalls or skips.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../support/server.ts";
import { mosooClient } from "../support/mosooClient.ts";

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer({ ADMIN_TOKEN: "root-token-mosoo-poll-0123456789ab", SANDBOX_CHUNK_DELAY_MS: "0" });
});
afterAll(async () => {
  await server?.stop();
});

const call = (method: string, path: string, body?: unknown) => mosooClient(server)(method, path, body);

const message = (text: string) => ({ input: { type: "user.message", content: [{ type: "text", text }] } });
const send = (id: string, text: string) => call("POST", `/threads/${id}/events`, { events: [{ type: "user_message", text }] });

async function fullLog(id: string): Promise<any[]> {
  const r = await call("GET", `/threads/${id}/events?limit=1000`);
  expect(r.status).toBe(200);
  return r.body.events;
}

async function until(id: string, done: (events: any[]) => boolean): Promise<any[]> {
  for (let i = 0; i < 400; i++) {
    const events = await fullLog(id);
    if (done(events)) return events;
    await Bun.sleep(25);
  }
  throw new Error(`thread ${id} never reached the expected state`);
}
const ends = (events: any[]) => events.filter((e) => /^run\.(completed|failed|cancelled)$/.test(e.type)).length;

/** A poller from `after`, `limit` at a time, following next_after until has_more is false. */
async function follow(id: string, after: string, limit: number): Promise<any[]> {
  const seen: any[] = [];
  let cursor = after;
  for (let i = 0; i < 500; i++) {
    const r = await call("GET", `/threads/${id}/events?after=${encodeURIComponent(cursor)}&limit=${limit}`);
    expect(r.status).toBe(200);
    seen.push(...r.body.events);
    cursor = r.body.next_after;
    if (!r.body.has_more) return seen;
  }
  throw new Error("the poller never caught up");
}

/** The store reads one request makes: readStream calls, the streams they name, and the events they yield. */
async function readsOf<T>(run: () => Promise<T>): Promise<{ result: T; calls: number; streams: number; events: number }> {
  const store = server.ctx.store;
  const names = new Set<string>();
  let calls = 0;
  let events = 0;
  server.ctx.store = new Proxy(store, {
    get(target, prop) {
      if (prop === "readStream") {
        return (stream: string, options?: any) => {
          calls++;
          names.add(stream);
          const it = target.readStream(stream, options);
          return (async function* () {
            for await (const e of it) {
              events++;
              yield e;
            }
          })();
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  try {
    return { result: await run(), calls, streams: names.size, events };
  } finally {
    server.ctx.store = store;
  }
}

test("Event log: a small poll reads as much of the store on a Thread of 16 runs as on one of 4", async () => {
  // Doc: "Poll the public event log for Agent messages, tool status, file changes, usage updates, and run completion."
  const created = await call("POST", "/agents/default/threads", message("Hello"));
  expect(created.status).toBe(201);
  const id = created.body.thread.id;
  let runs = 1;
  const grow = async (total: number) => {
    await until(id, (e) => ends(e) >= runs);
    while (runs < total) {
      expect((await send(id, `message ${runs + 1}`)).status).toBe(202);
      runs++;
      await until(id, (e) => ends(e) >= runs);
    }
  };
  const polls = ["after=0&limit=1", "after=2&limit=1", "after=3&limit=2"];
  const measure = async () => {
    const out = [];
    for (const q of polls) {
      const { result, ...reads } = await readsOf(() => call("GET", `/threads/${id}/events?${q}`));
      expect(result.status).toBe(200);
      expect(result.body.has_more).toBe(true);
      out.push({ q, ids: result.body.events.map((e: any) => e.id), ...reads });
    }
    return out;
  };
  await grow(4);
  const few = await measure();
  await grow(16);
  const many = await measure();
  // The same pages, at the same cost: the runs after the page are not read.
  expect(many).toEqual(few);
  for (const m of many) expect(m.streams).toBeLessThanOrEqual(3);
}, 60_000);

test("Event log: a run in flight through a page that names it nowhere still has its steps shown there, once", async () => {
  // The first run waits for a permission decision while three more messages queue behind it; once
  // allowed, it registers six assets (each a session event) with its tool steps between them: pages
  // in the middle hold none of its own events. A poller must still see every event of the log, once
  // and in order.
  const urls = [1, 2, 3, 4, 5, 6].map((n) => `https://example.com/cat${n}.png`);
  const created = await call("POST", "/agents/default/threads", message(`Please register ${urls.join(" ")} as assets`));
  const id = created.body.thread.id;
  await until(id, (e) => e.some((x) => x.type === "permission.requested"));
  for (const text of ["second", "third", "fourth"]) expect((await send(id, text)).status).toBe(202);
  expect((await call("POST", `/threads/${id}/events`, { events: [{ type: "permission_decision", decision: "allow" }] })).status).toBe(202);
  const log = await until(id, (e) => ends(e) >= 4);
  expect(log.filter((e) => e.type === "tool.completed").length).toBe(6);
  expect(log.filter((e) => e.type === "file.created").length).toBe(6);
  for (const limit of [1, 2, 3]) {
    expect((await follow(id, "0", limit)).map((e) => e.id)).toEqual(log.map((e) => e.id));
  }
  // From every id of the log, the rest of it, once.
  for (const [i, e] of log.entries()) {
    for (const limit of [1, 3]) expect((await follow(id, e.id, limit)).map((x) => x.id)).toEqual(log.slice(i + 1).map((x) => x.id));
  }
}, 60_000);

test("Event log: an after the log never gave is 400 invalid_cursor; a request since decided, and the old <cursor>.permission, resume after it", async () => {
  const created = await call("POST", "/agents/default/threads", message("Please register https://example.com/cat.png as an asset"));
  const id = created.body.thread.id;
  const waiting = await until(id, (e) => e.some((x) => x.type === "permission.requested"));
  const request = waiting.find((e) => e.type === "permission.requested");
  expect(request.id).toMatch(/^2\.permission\d+$/);
  const last = Number(/^\d+/.exec(waiting.at(-1).id)![0]);
  for (const after of [
    "999999999999999", String(last + 1), // past the log's end
    "2.tool", "2.permission999", "2.zzz7", "2.message", "0.run", "1.run", "00002", "1.permission", // never given
  ]) {
    const r = await call("GET", `/threads/${id}/events?after=${encodeURIComponent(after)}&limit=5`);
    expect([after, r.status, r.body.error?.code]).toEqual([after, 400, "invalid_cursor"]);
  }
  // The request is the log's: after it, nothing yet; after 2.run, the pending request itself.
  expect((await call("GET", `/threads/${id}/events?after=${request.id}`)).body.events).toEqual([]);
  expect((await call("GET", `/threads/${id}/events?after=2.run&limit=5`)).body.events.map((e: any) => e.id)).toEqual([request.id]);
  // An id of a request of another number at the same place is not the log's.
  const other = `2.permission${Number(request.id.slice("2.permission".length)) + 1}`;
  expect((await call("GET", `/threads/${id}/events?after=${other}`)).status).toBe(400);

  expect((await call("POST", `/threads/${id}/events`, { events: [{ type: "permission_decision", decision: "allow" }] })).status).toBe(202);
  const log = await until(id, (e) => ends(e) >= 1);
  // Decided, the request is no longer shown, but a poller that saw it resumes right after its place.
  expect(log.map((e) => e.id)).not.toContain(request.id);
  const afterRequest = await call("GET", `/threads/${id}/events?after=${request.id}&limit=100`);
  expect(afterRequest.status).toBe(200);
  const rest = log.slice(log.findIndex((e) => e.id === "2.run") + 1);
  expect(afterRequest.body.events.map((e: any) => e.id)).toEqual(rest.map((e) => e.id));
  // The id of a request from before requests were numbered resumes after everything placed at its cursor.
  const legacy = await call("GET", `/threads/${id}/events?after=2.permission&limit=100`);
  expect(legacy.status).toBe(200);
  expect(legacy.body.events.map((e: any) => e.id)).toEqual(rest.filter((e) => !e.id.startsWith("2.")).map((e) => e.id));
  // 0 is the log's start; the last id has nothing after it.
  expect((await call("GET", `/threads/${id}/events?after=0&limit=1000`)).body.events.map((e: any) => e.id)).toEqual(log.map((e) => e.id));
  const end = await call("GET", `/threads/${id}/events?after=${encodeURIComponent(log.at(-1).id)}`);
  expect([end.status, end.body.events, end.body.next_after]).toEqual([200, [], log.at(-1).id]);
}, 60_000);
