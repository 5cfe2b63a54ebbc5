/**
 * Turn throughput with the durable default: 16 concurrent clients, each sending messages with
 * `wait: true` in sequence, against the server on SQLite with synchronous=FULL (every acknowledged
 * append fsynced; group commit shares an fsync among the appends of one moment), next to the same
 * load on the memory store in the same run. Sandbox provider without delays; everything on 127.0.0.1.
 */
import { loadConfig } from "../src/config.ts";
import { silentLogger } from "../src/core/logger.ts";
import { startServer } from "../src/main.ts";
import { compare, NO_RATE_LIMITS, tempDir, type Result } from "./lib.ts";

const KEY = "bench-key-0123456789abcdef";

async function turnsPerSecond(eventStore: "sqlite" | "memory", clients: number, turnsEach: number): Promise<number> {
  const t = tempDir(`turns-${eventStore}`);
  const server = await startServer(loadConfig({
    PORT: "0", DATA_DIR: t.dir, API_KEY: KEY, EVENT_STORE: eventStore, SQLITE_SYNCHRONOUS: "full", SANDBOX_CHUNK_DELAY_MS: "0", ...NO_RATE_LIMITS,
  }), silentLogger);
  const headers = { "x-api-key": KEY, "content-type": "application/json" };
  const post = async (path: string, body: unknown) => {
    const res = await fetch(server.url + path, { method: "POST", headers, body: JSON.stringify(body) });
    if (res.status >= 300) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return res.json() as Promise<any>;
  };
  try {
    const sessions = await Promise.all(Array.from({ length: clients }, () => post("/v1/sessions", { user_id: "bench" })));
    const start = performance.now();
    await Promise.all(sessions.map(async (s) => {
      for (let i = 0; i < turnsEach; i++) {
        const turn = await post(`/v1/sessions/${s.id}/messages`, { content: `turn ${i}`, wait: true, wait_timeout_s: 60 });
        if (turn.status !== "completed") throw new Error(`turn ended ${turn.status}`);
      }
    }));
    return (clients * turnsEach / (performance.now() - start)) * 1000;
  } finally {
    await server.shutdown("bench");
    t.remove();
  }
}

export async function turnBenchmarks(quick: boolean): Promise<Result[]> {
  const turnsEach = quick ? 5 : 25;
  const r = await compare(quick ? 1 : 3, () => turnsPerSecond("sqlite", 16, turnsEach), () => turnsPerSecond("memory", 16, turnsEach));
  return [{
    name: "turns, 16 clients, sqlite synchronous=full (durable default)", unit: "turns/s", ...r,
    baselineName: "memory store", target: 0.6,
  }];
}

if (import.meta.main) {
  const { printTable } = await import("./lib.ts");
  printTable(await turnBenchmarks(process.argv.includes("--quick")));
}
