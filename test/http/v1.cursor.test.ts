/**
 * Cursor reads: `done` means the client has seen the terminal event; an SSE stream resumed at or
 * past a job's end closes at once; a slow SSE client is cut off with a bounded buffer and resumes
 * losing nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { newEventId } from "../../src/core/ids.ts";
import { api, readSse, TEST_KEY, type Api } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
let client: Api;

beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY, SANDBOX_CHUNK_DELAY_MS: "0", SSE_BUFFER_BYTES: "65536", SSE_STALL_TIMEOUT_MS: "500" });
  client = api(server.url);
});
afterAll(async () => {
  await server?.stop();
});

describe("done", () => {
  test("is true only in a response that holds the terminal event, or after it", async () => {
    // Many short turns polled from their start while they run: a poll that read its events just before
    // the job ended, and its status just after, must not say done.
    for (let round = 0; round < 20; round++) {
      const sid = (await client.post("/v1/sessions", { user_id: "done" })).body.id;
      const sent = await client.post(`/v1/sessions/${sid}/messages`, { content: `turn ${round}` });
      let cursor = 0;
      let sawTerminal = false;
      for (let i = 0; i < 500; i++) {
        const r = await client.get(`/v1/jobs/${sent.body.job_id}/events?since=${cursor}&limit=3`);
        sawTerminal ||= r.body.events.some((e: any) => ["job.completed", "job.failed", "job.cancelled"].includes(e.type));
        cursor = r.body.cursor;
        if (r.body.done) {
          expect(sawTerminal).toBe(true);
          break;
        }
      }
      expect(sawTerminal).toBe(true);
    }
  });

  test("a limit that stops short of the terminal event is not done", async () => {
    const sid = (await client.post("/v1/sessions", { user_id: "done" })).body.id;
    const turn = await client.post(`/v1/sessions/${sid}/messages`, { content: "hello", wait: true });
    const all = (await client.get(`/v1/jobs/${turn.body.job_id}/events?since=0&limit=1000`)).body;
    expect(all.done).toBe(true);
    const short = await client.get(`/v1/jobs/${turn.body.job_id}/events?since=0&limit=${all.events.length - 1}`);
    expect(short.body.done).toBe(false);
    const rest = await client.get(`/v1/jobs/${turn.body.job_id}/events?since=${short.body.cursor}`);
    expect(rest.body.done).toBe(true);
    const after = await client.get(`/v1/jobs/${turn.body.job_id}/events?since=${rest.body.cursor}`);
    expect({ done: after.body.done, events: after.body.events.length }).toEqual({ done: true, events: 0 });
  });
});

describe("SSE", () => {
  test("resumed with Last-Event-ID at an ended job's last event, the stream says done and closes", async () => {
    const sid = (await client.post("/v1/sessions", { user_id: "sse" })).body.id;
    const turn = await client.post(`/v1/sessions/${sid}/messages`, { content: "hello", wait: true });
    const all = (await client.get(`/v1/jobs/${turn.body.job_id}/events?since=0&limit=1000`)).body;
    const res = await fetch(`${server.url}/v1/jobs/${turn.body.job_id}/stream`, { headers: { "x-api-key": TEST_KEY, "last-event-id": String(all.cursor) } });
    const events = await readSse(res, (evs) => evs.some((e) => e.event === "done"));
    expect(events.map((e) => e.event)).toEqual(["done"]);
  });

  test("a session's stream open when the session is deleted sends session.deleted, then done, and closes", async () => {
    const sid = (await client.post("/v1/sessions", { user_id: "sse" })).body.id;
    const res = await fetch(`${server.url}/v1/sessions/${sid}/stream`, { headers: { "x-api-key": TEST_KEY } });
    const reading = readSse(res, () => false); // reads until the server ends the stream
    await Bun.sleep(100);
    expect((await client.del(`/v1/sessions/${sid}`)).status).toBe(200);
    const events = await Promise.race([reading, Bun.sleep(10_000).then(() => "still open" as const)]);
    expect(events === "still open" ? events : events.map((e) => e.event).slice(-2)).toEqual(["session.deleted", "done"]);
  });

  test("a Last-Event-ID the server never sent is a 400 naming it, not a stream that fails or replays from the start", async () => {
    const sid = (await client.post("/v1/sessions", { user_id: "sse" })).body.id;
    for (const id of ["9".repeat(400), "1.5", "-3", "0x10", "abc"]) {
      const res = await fetch(`${server.url}/v1/sessions/${sid}/stream`, { headers: { "x-api-key": TEST_KEY, "last-event-id": id } });
      const body = (await res.json()) as any;
      expect({ id, status: res.status, param: body.error.details.param }).toEqual({ id, status: 400, param: "Last-Event-ID" });
    }
  });

  test("a client that stops reading is cut off at the buffer bound; reconnecting with Last-Event-ID loses nothing", async () => {
    const sid = (await client.post("/v1/sessions", { user_id: "slow-reader" })).body.id;
    // 400 events of ~32 KB on the session stream: far more than the socket buffers and the 64 KiB bound.
    const filler = "x".repeat(32 * 1024);
    for (let i = 0; i < 40; i++) {
      await server.ctx.store.appendToStream(`session-${sid}`, Array.from({ length: 10 }, () => ({
        id: newEventId(), type: "SessionRenamed", data: { name: filler }, metadata: { app_id: "app_default" },
      })));
    }
    let received = "";
    let closedByServer = false;
    const socket = await Bun.connect({
      hostname: "127.0.0.1", port: server.port,
      socket: {
        data(_s, chunk) { received += new TextDecoder().decode(chunk); },
        close() { closedByServer = true; },
        error() { closedByServer = true; },
      },
    });
    socket.write(`GET /v1/sessions/${sid}/stream?since=0&verbosity=full HTTP/1.1\r\nHost: x\r\nx-api-key: ${TEST_KEY}\r\n\r\n`);
    // Read nothing more: pause the socket so the kernel buffers fill and the server's buffer with them.
    socket.pause();
    await Bun.sleep(1500); // three times SSE_STALL_TIMEOUT_MS, with its buffer full all along
    socket.resume(); // read what the kernel held, then the server's close
    for (let i = 0; i < 200 && !closedByServer; i++) await Bun.sleep(50);
    expect(closedByServer).toBe(true);
    const ids = [...received.matchAll(/\nid: (\d+)\n[^]*?\n\n/g)].map((m) => Number(m[1]));
    const lastComplete = ids.length ? ids[ids.length - 1]! : 0;
    expect(lastComplete).toBeLessThan(401);
    const res = await fetch(`${server.url}/v1/sessions/${sid}/stream?verbosity=full`, { headers: { "x-api-key": TEST_KEY, "last-event-id": String(lastComplete) } });
    const rest = await readSse(res, (evs) => evs.some((e) => e.id === 401));
    expect(rest.map((e) => e.id)).toEqual(Array.from({ length: 401 - lastComplete }, (_, i) => lastComplete + 1 + i));
  }, 30_000);
});
