/**
 * Compat-surface benchmarks: what a translation layer costs over the `/v1` route doing the same work,
 * on one server, in the same run.
 * - a MUAPI job-events poll (translated event by event) against `/v1/jobs/{id}/events` and against a
 *   bare Elysia route answering the MUAPI body;
 * - an OpenAI `responses.retrieve` (the job's events folded into a Response, kept and extended) against
 *   `GET /v1/jobs/{id}`;
 * - a whole turn through Magus's one synchronous call against `/v1` messages with `wait: true` (p50).
 */
import { Elysia } from "elysia";
import { loadConfig } from "../src/config.ts";
import { silentLogger } from "../src/core/logger.ts";
import { startServer } from "../src/main.ts";
import { throughput } from "./api.ts";
import { compare, median, NO_RATE_LIMITS, tempDir, type Result } from "./lib.ts";

const KEY = "bench-key-0123456789abcdef";

export async function compatBenchmarks(quick: boolean): Promise<Result[]> {
  const results: Result[] = [];
  const t = tempDir("compat");
  const server = await startServer(loadConfig({ PORT: "0", DATA_DIR: t.dir, API_KEY: KEY, SQLITE_SYNCHRONOUS: "normal", SANDBOX_CHUNK_DELAY_MS: "0", ...NO_RATE_LIMITS }), silentLogger);
  const headers = { "x-api-key": KEY, "content-type": "application/json" };
  const post = async (path: string, body: unknown) => {
    const res = await fetch(server.url + path, { method: "POST", headers, body: JSON.stringify(body) });
    if (res.status >= 300) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return res.json() as Promise<any>;
  };
  const requests = quick ? 2000 : 20_000;
  const rounds = quick ? 1 : 5;

  // A finished MUAPI job (a chat turn) to poll, as the doc's client polls it.
  const muapi = "/compat/muapi/api/v1/creative-agent";
  const session = await post(`${muapi}/sessions`, { name: "bench" });
  const { job_id: jobId } = await post(`${muapi}/sessions/${session.id}/chat`, { message: "hello there" });
  for (let i = 0; i < 400; i++) {
    const poll = await (await fetch(`${server.url}${muapi}/jobs/${jobId}/events?since=0`, { headers })).json() as { done: boolean };
    if (poll.done) break;
    await Bun.sleep(10);
  }
  const muapiPoll = `${server.url}${muapi}/jobs/${jobId}/events?since=0`;
  const v1Poll = `${server.url}/v1/jobs/${jobId}/events?since=0`;
  const muapiBody = await (await fetch(muapiPoll, { headers })).text();
  const bare = new Elysia().get("/events", () => new Response(muapiBody, { headers: { "content-type": "application/json" } })).listen({ port: 0, hostname: "127.0.0.1" });
  const vsV1 = await compare(rounds, () => throughput(muapiPoll, requests, 32, headers), () => throughput(v1Poll, requests, 32, headers));
  results.push({ name: "MUAPI GET /jobs/{id}/events (whole job, 32 clients)", unit: "req/s", ...vsV1, baselineName: "/v1/jobs/{id}/events, same job", target: 0.8 });
  const vsBare = await compare(rounds, () => throughput(muapiPoll, requests, 32, headers), () => throughput(`http://127.0.0.1:${bare.server!.port}/events`, requests, 32));
  results.push({ name: "MUAPI GET /jobs/{id}/events (whole job, 32 clients)", unit: "req/s", ...vsBare, baselineName: "bare Elysia route, same body", target: 0.4 });
  bare.stop(true);

  // OpenAI responses.retrieve of a finished response: its events folded into a Response each call.
  const response = await post("/compat/openai/v1/responses", { model: "default", input: "hello there" });
  if (response.status !== "completed") throw new Error(`response ended ${response.status}`);
  const retrieve = await compare(
    rounds,
    () => throughput(`${server.url}/compat/openai/v1/responses/${response.id}`, requests, 32, headers),
    () => throughput(`${server.url}/v1/jobs/${response.id}`, requests, 32, headers),
  );
  results.push({ name: "OpenAI GET /responses/{id} (32 clients)", unit: "req/s", ...retrieve, baselineName: "GET /v1/jobs/{id}, same job", target: 0.9 });

  // A whole turn: Magus's synchronous message against /v1's message with wait.
  const turns = quick ? 20 : 200;
  const magus: number[] = [];
  const v1: number[] = [];
  const v1Session = await post("/v1/sessions", { user_id: "bench" });
  for (let i = 0; i < turns; i++) {
    let started = performance.now();
    const m = await fetch(`${server.url}/compat/magus/api/v1/messages`, {
      method: "POST", headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" }, body: JSON.stringify({ content: `turn ${i}`, session_id: "bench" }),
    });
    if (m.status !== 200) throw new Error(`magus: ${m.status} ${await m.text()}`);
    await m.arrayBuffer();
    magus.push(performance.now() - started);
    started = performance.now();
    const r = await post(`/v1/sessions/${v1Session.id}/messages`, { content: `turn ${i}`, wait: true });
    if (r.status !== "completed") throw new Error(`turn ended ${r.status}`);
    v1.push(performance.now() - started);
  }
  // Latency, lower is better: the ratio is Magus's over /v1's, so near 1 means the translation costs nothing.
  results.push({ name: "Magus POST /api/v1/messages, whole turn, p50", unit: "ms", value: median(magus), baselineName: "/v1 message with wait, p50", baseline: median(v1) });

  await server.shutdown("bench");
  t.remove();
  return results;
}
