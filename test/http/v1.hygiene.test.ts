/**
 * Input hygiene at the edge: authentication before anything is parsed, bounded bodies (size and
 * arrival time), JSON only, well-formed strings, strict query numbers, and every 4xx naming the
 * parameter the client sent — each in the error envelope, never a 500.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
let client: Api;
let port: number;

beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY, MAX_BODY_BYTES: "4096", BODY_TIMEOUT_MS: "300" });
  client = api(server.url);
  port = server.port;
});
afterAll(async () => {
  await server?.stop();
});

/** Sends raw bytes on a new connection and returns what the server answers (until it closes or 5 s). */
async function raw(request: string, keepOpenMs = 0): Promise<string> {
  let received = "";
  let closed!: () => void;
  const done = new Promise<void>((resolve) => (closed = resolve));
  const socket = await Bun.connect({
    hostname: "127.0.0.1", port,
    socket: {
      data(_s, chunk) {
        received += new TextDecoder().decode(chunk);
        if (/\r\n\r\n/.test(received) && /content-length: (\d+)/i.test(received)) {
          const length = Number(/content-length: (\d+)/i.exec(received)![1]);
          if (received.length - received.indexOf("\r\n\r\n") - 4 >= length) closed();
        }
      },
      close() { closed(); },
      error() { closed(); },
    },
  });
  socket.write(request);
  if (keepOpenMs) await Bun.sleep(keepOpenMs);
  await Promise.race([done, Bun.sleep(5000)]);
  socket.end();
  return received;
}

/** Sends `request` and waits (bounded) for the server to close the connection: true when it did. */
async function serverCloses(request: string): Promise<{ answer: string; closed: boolean }> {
  let answer = "";
  let closed = false;
  let onClose!: () => void;
  const done = new Promise<void>((resolve) => (onClose = resolve));
  const socket = await Bun.connect({
    hostname: "127.0.0.1", port,
    socket: {
      data(_s, chunk) { answer += new TextDecoder().decode(chunk); },
      close() { closed = true; onClose(); },
      error() { onClose(); },
    },
  });
  socket.write(request);
  // Far below the server's idle timeout: a connection still open by then was left to idle out.
  await Promise.race([done, Bun.sleep(3000)]);
  socket.end();
  return { answer, closed };
}

const statusOf = (response: string) => Number(response.split(" ")[1]);
const bodyOf = (response: string) => JSON.parse(response.slice(response.indexOf("\r\n\r\n") + 4));

describe("authentication comes first", () => {
  test("a request without a key gets 401, not the schema's complaints", async () => {
    const res = await fetch(`${server.url}/v1/sessions`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"wrong": 1}' });
    expect(res.status).toBe(401);
    expect(((await res.json()) as any).error.code).toBe("invalid_api_key");
  });

  test("a deeply nested body without a key is not parsed", async () => {
    const nested = "[".repeat(100_000) + "]".repeat(100_000);
    const res = await fetch(`${server.url}/v1/sessions`, { method: "POST", headers: { "content-type": "application/json" }, body: nested });
    expect(res.status).toBe(401);
  });

  test("a half-sent body without a key is answered 401 at once, without waiting for the rest", async () => {
    const { answer, closed } = await serverCloses("POST /v1/sessions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{\"user");
    expect(statusOf(answer)).toBe(401);
    // The rest of the body will never be read: the connection is closed with the answer, not held.
    expect(answer.toLowerCase()).toContain("connection: close");
    expect(closed).toBe(true);
  });
});

describe("bodies", () => {
  test("a body that does not finish arriving within BODY_TIMEOUT_MS gets 408 in the envelope", async () => {
    const answer = await raw(`POST /v1/sessions HTTP/1.1\r\nHost: x\r\nx-api-key: ${TEST_KEY}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"user_id": "`);
    expect(statusOf(answer)).toBe(408);
    expect(bodyOf(answer).error.code).toBe("request_timeout");
    expect(answer.toLowerCase()).toContain("connection: close"); // the half-sent body is not waited for again
  });

  test("a body over MAX_BODY_BYTES gets 413 in the envelope, declared or streamed", async () => {
    const big = JSON.stringify({ user_id: "x".repeat(5000) });
    const declared = await client.post("/v1/sessions", big);
    expect(declared.status).toBe(413);
    expect(declared.body.error.code).toBe("payload_too_large");
    const streamed = await fetch(`${server.url}/v1/sessions`, {
      method: "POST", headers: { "x-api-key": TEST_KEY, "content-type": "application/json" },
      body: new ReadableStream({ start(c) { for (let i = 0; i < 10; i++) c.enqueue(new TextEncoder().encode(" ".repeat(1000))); c.close(); } }),
    });
    expect(streamed.status).toBe(413);
    expect(((await streamed.json()) as any).error.code).toBe("payload_too_large");
  });

  test("form-urlencoded and multipart bodies are refused with 415 and create nothing", async () => {
    const before = (await client.get("/v1/sessions?user_id=form-user")).body.data.length;
    const form = await fetch(`${server.url}/v1/sessions`, { method: "POST", headers: { "x-api-key": TEST_KEY, "content-type": "application/x-www-form-urlencoded" }, body: "user_id=form-user" });
    expect(form.status).toBe(415);
    expect(((await form.json()) as any).error.code).toBe("unsupported_media_type");
    const data = new FormData();
    data.set("user_id", "form-user");
    const multipart = await fetch(`${server.url}/v1/sessions`, { method: "POST", headers: { "x-api-key": TEST_KEY }, body: data });
    expect(multipart.status).toBe(415);
    expect((await client.get("/v1/sessions?user_id=form-user")).body.data.length).toBe(before);
  });

  test("a string with a lone surrogate is refused, naming the field, instead of being stored two ways", async () => {
    const r = await client.post("/v1/sessions", '{"user_id": "u", "metadata": {"note": "broken \\ud800 here"}}');
    expect(r.status).toBe(400);
    expect(r.body.error.details.param).toBe("metadata.note");
    const paired = await client.post("/v1/sessions", '{"user_id": "u", "name": "emoji \\ud83d\\ude00"}');
    expect(paired.status).toBe(201);
    expect(paired.body.name).toBe("emoji 😀");
  });

  test("a __proto__ key anywhere in a body is refused, naming it, instead of vanishing", async () => {
    for (const body of ['{"user_id": "u", "metadata": {"__proto__": {"admin": true}}}', '{"user_id": "u", "metadata": {"a": [{"\u005f_proto__": 1}]}}']) {
      const r = await client.post("/v1/sessions", body);
      expect({ status: r.status, code: r.body.error?.code }).toEqual({ status: 400, code: "invalid_request" });
      expect(r.body.error.details.param).toMatch(/__proto__$/);
    }
    // A body that is not an object is refused too: every body this API takes is one.
    for (const body of ["[]", "null", "3", '"text"']) expect((await client.post("/v1/sessions", body)).status).toBe(400);
  });
});

describe("request ids", () => {
  test("the caller's x-request-id is carried when it is short and printable, replaced otherwise", async () => {
    const sent = await fetch(`${server.url}/v1/sessions`, { headers: { "x-api-key": TEST_KEY, "x-request-id": "trace-42" } });
    expect(sent.headers.get("x-request-id")).toBe("trace-42");
    for (const bad of ["x".repeat(129), "has space"]) {
      const res = await fetch(`${server.url}/v1/sessions`, { headers: { "x-api-key": TEST_KEY, "x-request-id": bad } });
      expect(res.headers.get("x-request-id")).not.toBe(bad);
      expect(res.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    }
  });
});

describe("query parameters", () => {
  const cases: Array<[path: string, param: string, code?: string]> = [
    ["/v1/jobs/job_x/events?since=0x10", "since"],
    ["/v1/jobs/job_x/events?since=1e3", "since"],
    ["/v1/jobs/job_x/events?since=-1", "since"],
    ["/v1/jobs/job_x/events?limit=5000", "limit"],
    ["/v1/jobs/job_x/events?wait=99", "wait"],
    ["/v1/sessions?limit=0", "limit"],
    ["/v1/sessions?limit=%2B5", "limit"],
    ["/v1/sessions?archived=yes", "archived"],
    // A repeated parameter is refused: each reader could take a different one of its values.
    ["/v1/sessions?limit=1&limit=500", "limit"],
    ["/v1/jobs/job_x/events?since=0&since=0x5", "since"],
    ["/v1/sessions?user_id=a&user_id=b", "user_id"],
    // An unknown parameter is refused, not ignored (a typo would silently read from the start).
    ["/v1/jobs/job_x/events?sinc=3", "sinc"],
    ["/v1/sessions/sess_x/events?since=1&waitt=5", "waitt"],
    ["/v1/sessions?cursor=not-a-cursor", "cursor", "invalid_cursor"],
    [`/v1/sessions?cursor=${Buffer.from(JSON.stringify({ seq: {}, id: 1 })).toString("base64url")}`, "cursor", "invalid_cursor"],
    [`/v1/agents?cursor=${Buffer.from("[1,2]").toString("base64url")}`, "cursor", "invalid_cursor"],
  ];
  for (const [path, param, code] of cases) {
    test(`${path} → 400 naming ${param}`, async () => {
      const r = await client.get(path);
      expect({ status: r.status, param: r.body.error?.details?.param }).toEqual({ status: 400, param });
      if (code) expect(r.body.error.code).toBe(code);
    });
  }

  test("a bad `before` names before", async () => {
    const sid = (await client.post("/v1/sessions", { user_id: "q" })).body.id;
    const r = await client.get(`/v1/sessions/${sid}/messages?before=garbage`);
    expect({ status: r.status, param: r.body.error.details.param }).toEqual({ status: 400, param: "before" });
  });

  test("well-formed numbers still work", async () => {
    expect((await client.get("/v1/sessions?limit=5&archived=false")).status).toBe(200);
  });
});

describe("client JSON Schemas", () => {
  test("a pattern the linear-time engine cannot run is refused at create, naming output_schema", async () => {
    const schema = { type: "object", properties: { code: { type: "string", pattern: "(a)\\1" } } };
    const run = await client.post("/v1/runs", { user_id: "u", input: "x", output_schema: schema });
    expect({ status: run.status, param: run.body.error.details.param }).toEqual({ status: 400, param: "output_schema" });
    const agent = await client.post("/v1/agents", { name: "a", output_schema: schema });
    expect({ status: agent.status, param: agent.body.error.details.param }).toEqual({ status: 400, param: "output_schema" });
  });
});
