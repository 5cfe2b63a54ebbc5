/**
 * The Mosoo surface under interleavings a client cannot arrange but production gives: writes landing
 * while the event log is read, a log read between a message and its run's job, and concurrent messages
 * racing for a Thread's files. Each interleaving is forced here with a hook on the real server's store or
 * repositories (no sleeps to win a race), and every assertion is what a Mosoo client relies on.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../support/server.ts";
import { mosooBase, mosooClient } from "../support/mosooClient.ts";
import { api } from "../support/api.ts";
import { jobStream } from "../../src/domain/streams.ts";
import { OCCURRED_AT_KEY, SCHEMA_VERSION_KEY } from "../../src/core/eventContract.ts";

let server: TestServer;
let base: string;

beforeAll(async () => {
  server = await startTestServer({ ADMIN_TOKEN: "root-token-mosoo-races-0123456789", SANDBOX_CHUNK_DELAY_MS: "5" });
  base = mosooBase(server);
});
afterAll(async () => {
  await server?.stop();
});

const call = (method: string, path: string, body?: unknown) => mosooClient(server)(method, path, body);

const message = (text: string) => ({ input: { type: "user.message", content: [{ type: "text", text }] } });

async function fullLog(id: string): Promise<any[]> {
  const r = await call("GET", `/threads/${id}/events?limit=1000`);
  expect(r.status).toBe(200);
  return r.body.events;
}

async function untilEnded(id: string, runs = 1): Promise<any[]> {
  for (let i = 0; i < 200; i++) {
    const events = await fullLog(id);
    if (events.filter((e) => /^run\.(completed|failed|cancelled)$/.test(e.type)).length >= runs) return events;
    await Bun.sleep(50);
  }
  throw new Error(`thread ${id} never ended ${runs} run(s)`);
}

/** A promise and the function that settles it: a gate a hook waits at until the test opens it. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => { open = resolve; });
  return { opened, open };
}

test("Event log: a run's event and a session event recorded while a poll reads come with the next poll, each once and in order", async () => {
  // Doc: "Poll the public event log for Agent messages, tool status, file changes, usage updates, and run completion."
  const created = await call("POST", "/agents/default/threads", message("Hello"));
  const id = created.body.thread.id;
  const runId = created.body.run.id;
  const log = await untilEnded(id);
  const last = log.at(-1).id;

  // The poll takes its position; then, before it reads anything, the run records a tool step and the
  // session an event after it (as a worker and another request would).
  const store = server.ctx.store;
  let interleaved = false;
  const hooked = new Proxy(store, {
    get(target, prop) {
      if (prop === "headPosition") {
        return async () => {
          const head = await target.headPosition();
          if (!interleaved) {
            interleaved = true;
            let appId: unknown;
            for await (const raw of target.readStream(jobStream(runId))) appId = raw.metadata.app_id;
            await target.appendToStream(jobStream(runId), [{
              id: crypto.randomUUID(), type: "ToolCalled", data: { step: 9, call_id: "late_call", name: "late_tool", args: {} },
              metadata: { app_id: appId, [SCHEMA_VERSION_KEY]: 1, [OCCURRED_AT_KEY]: Date.now() },
            }]);
            expect((await call("POST", `/threads/${id}/archive`)).status).toBe(200);
          }
          return head;
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  server.ctx.store = hooked;
  let first;
  try {
    first = await call("GET", `/threads/${id}/events?after=${encodeURIComponent(last)}`);
  } finally {
    server.ctx.store = store;
  }
  expect(interleaved).toBe(true);
  expect(first.status).toBe(200);
  const second = await call("GET", `/threads/${id}/events?after=${encodeURIComponent(first.body.next_after)}`);
  const seen = [...first.body.events, ...second.body.events];
  // The tool step was recorded before the archive: it is seen, once, before it.
  expect(seen.map((e) => [e.type, e.content])).toEqual([["tool.started", "late_tool"], ["thread.archived", null]]);
  // And the whole log agrees with what the poller saw.
  expect((await fullLog(id)).slice(log.length).map((e) => e.id)).toEqual(seen.map((e) => e.id));
});

test("Event log: a Thread read between a message and its run's job being queued answers 200, with the message", async () => {
  const created = await call("POST", "/agents/default/threads", message("Hello"));
  const id = created.body.thread.id;
  await untilEnded(id);
  // The message is recorded on the session, then its job is queued: hold the job there.
  const jobs = server.ctx.repos.jobs;
  const handle = jobs.handle.bind(jobs);
  const reached = gate();
  const release = gate();
  jobs.handle = (async (jobId: string, command: any, ...rest: any[]) => {
    if (typeof command === "object" && command?.type === "QueueJob") {
      reached.open();
      await release.opened;
    }
    return (handle as any)(jobId, command, ...rest);
  }) as typeof jobs.handle;
  let sent;
  try {
    sent = call("POST", `/threads/${id}/events`, { events: [{ type: "user_message", text: "again" }] });
    await reached.opened;
    const full = await call("GET", `/threads/${id}/events`);
    expect(full.status).toBe(200);
    expect(full.body.events.filter((e: any) => e.type === "user.message").map((e: any) => e.content)).toEqual(["Hello", "again"]);
    const poll = await call("GET", `/threads/${id}/events?after=0`);
    expect(poll.status).toBe(200);
    expect((await call("GET", `/threads/${id}`)).status).toBe(200);
  } finally {
    release.open();
    jobs.handle = handle;
  }
  expect((await sent).status).toBe(202);
  await untilEnded(id, 2);
});

test("Thread files: of concurrent messages after a file is added, exactly one carries it", async () => {
  // Doc: add a file "when the Agent needs input from a document", then send a message.
  for (let round = 0; round < 4; round++) {
    const created = await call("POST", "/agents/default/threads", message("[slow] Hello"));
    const id = created.body.thread.id;
    const added = await call("POST", `/threads/${id}/files`, { contentBase64: Buffer.from("the plan").toString("base64"), contentType: "text/plain", name: "plan.txt" });
    expect(added.status).toBe(201);
    const sent = await Promise.all([1, 2, 3].map((i) => call("POST", `/threads/${id}/events`, { events: [{ type: "user_message", text: `message ${i}` }] })));
    expect(sent.map((r) => r.status)).toEqual([202, 202, 202]);
    const history = await api(server.url, server.apiKey).get(`/v1/sessions/${id}/messages`);
    const messages: any[] = history.body.data ?? history.body;
    const carrying = messages.filter((m) => (m.attachments ?? []).some((a: any) => a.file_id === added.body.file.id));
    expect(carrying.length).toBe(1);
    expect(carrying[0].content).toMatch(/^message [123]$/);
  }
}, 60_000);

test("Thread files: a retried message (same Idempotency-Key) carries the file it carried the first time, and no later message does", async () => {
  const created = await call("POST", "/agents/default/threads", message("Hello"));
  const id = created.body.thread.id;
  await untilEnded(id);
  const added = await call("POST", `/threads/${id}/files`, { contentBase64: Buffer.from("the plan").toString("base64"), contentType: "text/plain", name: "plan.txt" });
  const send = (text: string, key: string) => fetch(`${base}/threads/${id}/events`, {
    method: "POST", headers: { Authorization: `Bearer ${server.apiKey}`, "Content-Type": "application/json", "Idempotency-Key": key },
    body: JSON.stringify({ events: [{ type: "user_message", text }] }),
  }).then(async (r) => ({ status: r.status, body: await r.json() as any }));
  const first = await send("Read the plan", "files-once-1");
  const retry = await send("Read the plan", "files-once-1");
  expect(retry).toEqual(first);
  await send("Anything else?", "files-once-2");
  await untilEnded(id, 3);
  const history = await api(server.url, server.apiKey).get(`/v1/sessions/${id}/messages`);
  const messages: any[] = history.body.data ?? history.body;
  expect(messages.filter((m) => (m.attachments ?? []).some((a: any) => a.file_id === added.body.file.id)).map((m) => m.content)).toEqual(["Read the plan"]);
});
