/**
 * Event-store and projection benchmarks against raw bun:sqlite, at the same durability setting and
 * on the same table layout, so the ratio is the adapter's own overhead.
 */
import { Database } from "bun:sqlite";
import { projections } from "../projections/index.ts";
import { SqliteEventStore, type SqliteSynchronous } from "../src/eventstore/adapters/sqlite.ts";
import type { EventData } from "../src/eventstore/port.ts";
import { chainBodyJson, chainLink, GENESIS, withChainJson } from "../src/eventstore/chain.ts";
import { openReadModelDb } from "../src/projections/readModelDb.ts";
import { ProjectionRunner } from "../src/projections/runner.ts";
import { compare, rate, tempDir, type Result } from "./lib.ts";

const payload = { text: "The quick brown fox jumps over the lazy dog", n: 42, tags: ["a", "b"] };
const newEvent = (i: number): EventData => ({ id: crypto.randomUUID(), type: "BenchmarkEventRecorded", data: { ...payload, i } });

/**
 * A realistic history: sessions with turns, each turn the events the runtime writes (message, job
 * queued/started, coalesced text, usage, completion, turn end), about ten events per turn.
 */
async function appendDomainHistory(store: SqliteEventStore, total: number): Promise<number> {
  let written = 0;
  const meta = { app_id: "app_default" };
  const ev = (type: string, data: unknown): EventData => ({ id: crypto.randomUUID(), type, data, metadata: meta });
  for (let s = 0; written < total; s++) {
    const sessionId = `sess_bench${s}`;
    await store.appendToStream(`session-${sessionId}`, [ev("SessionStarted", { session_id: sessionId, agent_id: "agt_default", user_id: `user${s % 50}`, name: `s${s}`, external_ref: null, metadata: {} })]);
    written++;
    for (let turn = 0; turn < 5 && written < total; turn++) {
      const jobId = `job_bench${s}_${turn}`;
      const messageId = `msg_bench${s}_${turn}`;
      await store.appendToStream(`session-${sessionId}`, [ev("MessageSent", { message_id: messageId, job_id: jobId, content: payload.text, attachments: [], model: null, context: null, queued: false })]);
      await store.appendToStream(`job-${jobId}`, [
        ev("JobQueued", { job_id: jobId, kind: "message", session_id: sessionId, message_id: messageId, agent_id: "agt_default", user_id: `user${s % 50}`, input: { content: payload.text, attachments: [], media_url: null, context: null }, model: null, output_schema: null }),
        ev("JobStarted", { attempt: 1, runner_id: "bench" }),
        ev("TextEmitted", { step: 1, content: payload.text }),
        ev("TextEmitted", { step: 1, content: payload.text }),
        ev("UsageRecorded", { step: 1, provider: "sandbox", model: "sandbox-1", prompt_tokens: 40, completion_tokens: 20, cached_tokens: 0, reasoning_tokens: 0 }),
        ev("JobCompleted", { content: payload.text + payload.text, result: null }),
      ]);
      await store.appendToStream(`session-${sessionId}`, [ev("TurnEnded", { job_id: jobId, message_id: messageId, outcome: "completed", reply: { content: payload.text, result: null, tool_calls: [], assets: [] }, error: null })]);
      written += 8;
    }
  }
  return written;
}

/** The adapter's table layout, written to directly: the baseline. */
function rawDb(path: string, synchronous: SqliteSynchronous) {
  const db = new Database(path, { create: true, strict: true });
  db.exec("PRAGMA journal_mode = WAL");
  db.exec(`PRAGMA synchronous = ${synchronous.toUpperCase()}`);
  db.exec(`CREATE TABLE events (position INTEGER PRIMARY KEY, stream TEXT NOT NULL, revision INTEGER NOT NULL, id TEXT NOT NULL,
    type TEXT NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL, created INTEGER NOT NULL);
    CREATE UNIQUE INDEX events_by_stream ON events(stream, revision); CREATE INDEX events_by_id ON events(id);`);
  const insert = db.query("INSERT INTO events (stream, revision, id, type, data, metadata, created) VALUES (?, ?, ?, ?, ?, ?, ?)");
  return { db, insert };
}

export async function eventStoreBenchmarks(quick: boolean): Promise<Result[]> {
  const results: Result[] = [];
  const rounds = quick ? 1 : 3;

  for (const synchronous of ["full", "normal"] as const) {
    const count = synchronous === "full" ? (quick ? 300 : 1500) : quick ? 2000 : 10_000;
    const streams = 100;
    const single = await compare(
      rounds,
      async () => {
        const t = tempDir("store");
        const store = new SqliteEventStore({ path: t.path("e.sqlite"), synchronous });
        const r = await rate(count, (i) => store.appendToStream(`session-${i % streams}`, [newEvent(i)]));
        await store.close();
        t.remove();
        return r;
      },
      async () => {
        const t = tempDir("raw");
        const { db, insert } = rawDb(t.path("r.sqlite"), synchronous);
        const revisions = new Array<number>(streams).fill(0);
        const r = await rate(count, (i) => {
          const s = i % streams;
          insert.run(`session-${s}`, revisions[s]!++, crypto.randomUUID(), "MessageSent", JSON.stringify({ ...payload, i }), "{}", Date.now());
        });
        db.close();
        t.remove();
        return r;
      },
    );
    results.push({ name: `sqlite append, 1 event (synchronous=${synchronous})`, unit: "appends/s", ...single, baselineName: "raw INSERT", target: 0.7 });

    const batches = Math.max(50, Math.floor(count / 5));
    const batched = await compare(
      rounds,
      async () => {
        const t = tempDir("store");
        const store = new SqliteEventStore({ path: t.path("e.sqlite"), synchronous });
        const r = await rate(batches, (i) => store.appendToStream(`session-${i % streams}`, Array.from({ length: 10 }, (_, k) => newEvent(i * 10 + k))));
        await store.close();
        t.remove();
        return r * 10;
      },
      async () => {
        const t = tempDir("raw");
        const { db, insert } = rawDb(t.path("r.sqlite"), synchronous);
        const revisions = new Array<number>(streams).fill(0);
        const tx = db.transaction((i: number) => {
          const s = i % streams;
          for (let k = 0; k < 10; k++) {
            insert.run(`session-${s}`, revisions[s]!++, crypto.randomUUID(), "MessageSent", JSON.stringify({ ...payload, i: i * 10 + k }), "{}", Date.now());
          }
        });
        const r = await rate(batches, (i) => tx.immediate(i));
        db.close();
        t.remove();
        return r * 10;
      },
    );
    results.push({ name: `sqlite append, 10-event batch (synchronous=${synchronous})`, unit: "events/s", ...batched, baselineName: "raw INSERTs in 1 tx", target: 0.7 });
  }

  results.push(...(await chainCost(quick, rounds, results)));

  // Reads and rebuilds over one shared history.
  const total = quick ? 20_000 : 200_000;
  const t = tempDir("history");
  const store = new SqliteEventStore({ path: t.path("e.sqlite"), synchronous: "normal" });
  const historySize = await appendDomainHistory(store, total);
  const scan = await compare(
    rounds,
    async () => {
      const start = performance.now();
      let n = 0;
      for await (const _ of store.readAll()) n++;
      return (n / (performance.now() - start)) * 1000;
    },
    async () => {
      const db = new Database(t.path("e.sqlite"), { readonly: true });
      const start = performance.now();
      let n = 0;
      let last = 0;
      const page = db.query("SELECT position, stream, revision, id, type, data, metadata, created FROM events WHERE position > ? ORDER BY position LIMIT 1000");
      for (;;) {
        const rows = page.values(last) as unknown[][];
        if (rows.length === 0) break;
        for (const row of rows) {
          JSON.parse(row[5] as string); // a reader always decodes the payload
          n++;
        }
        last = rows[rows.length - 1]![0] as number;
      }
      db.close();
      return (n / (performance.now() - start)) * 1000;
    },
  );
  results.push({ name: `readAll over ${historySize.toLocaleString("en-US")} events`, unit: "events/s", ...scan, baselineName: "raw paged SELECT + JSON.parse" });

  const rebuildRates: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const db = openReadModelDb(t.path(`rm-${r}.sqlite`));
    const runner = new ProjectionRunner(store, db, projections, { batchSize: 2000 });
    const start = performance.now();
    runner.start();
    await runner.waitUntilCaughtUp(600_000);
    rebuildRates.push((historySize / (performance.now() - start)) * 1000);
    await runner.stop();
    db.close();
  }
  rebuildRates.sort((a, b) => a - b);
  const offlineRate = rebuildRates[Math.floor(rebuildRates.length / 2)]!;
  results.push({ name: `projection rebuild, all ${projections.length} read models, ${historySize.toLocaleString("en-US")} domain events`, unit: "events/s", value: offlineRate, target: 100_000 });

  // Online: every read model rebuilt at once into shadows beside live tables that stay current, then
  // swapped in; against the offline refold above (same history, same read models).
  const onlineRates: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const db = openReadModelDb(t.path(`online-${r}.sqlite`));
    const runner = new ProjectionRunner(store, db, projections, { batchSize: 2000 });
    runner.start();
    await runner.waitUntilCaughtUp(600_000);
    const start = performance.now();
    for (const p of projections) runner.rebuild(p.name);
    for (const p of projections) await runner.whenRebuilt(p.name);
    onlineRates.push((historySize / (performance.now() - start)) * 1000);
    await runner.stop();
    db.close();
  }
  onlineRates.sort((a, b) => a - b);
  results.push({
    name: `online rebuild (shadows + swap), all ${projections.length} read models at once`, unit: "events/s",
    value: onlineRates[Math.floor(onlineRates.length / 2)]!, baseline: offlineRate, baselineName: "offline refold (row above)",
  });
  await store.close();
  t.remove();
  return results;
}

/**
 * What the hash chain adds to an append, per event, as the sqlite adapter does it: the text hashed (the
 * data's JSON text is the one stored, made anyway; the metadata with sorted keys), one SHA-256, the
 * chain spliced into the stored metadata text, and the previous event's chain read back from its
 * metadata text. Measured alone, on events shaped like the runtime's, and set against the append rates
 * measured above (which include it), so the share of an append it takes is direct.
 */
async function chainCost(quick: boolean, rounds: number, appends: readonly Result[]): Promise<Result[]> {
  const count = quick ? 20_000 : 200_000;
  const metadata = {
    app_id: "app_default", actor: "key:key_0123456789", schema_version: 1, occurred_at: 1_764_633_600_000,
    correlationId: "5f0c7a4e-8f7e-4d8a-9a43-3f1c0f3e2b11", causationId: "5f0c7a4e-8f7e-4d8a-9a43-3f1c0f3e2b11", request_id: "req_0123456789",
  };
  const dataJson = JSON.stringify({ job_id: "job_bench", message_id: "msg_bench", content: payload.text, attachments: [], model: null, context: null, queued: false });
  const metadataJson = JSON.stringify(metadata);
  const id = crypto.randomUUID();
  const rates: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let prevJson = withChainJson(metadataJson, GENESIS);
    rates.push(await rate(count, () => {
      const prev = prevJson.slice(-66, -2);
      const body = chainBodyJson("session-sess_bench", id, "MessageSent", dataJson, metadata);
      prevJson = withChainJson(metadataJson, chainLink(prev, body));
    }));
  }
  rates.sort((a, b) => a - b);
  const links = rates[Math.floor(rates.length / 2)]!;
  const perEventUs = 1e6 / links;
  for (const a of appends) {
    console.log(`  hash chain: ${perEventUs.toFixed(2)} µs/event = ${((perEventUs / (1e6 / a.value)) * 100).toFixed(1)}% of "${a.name}" (${Math.round(a.value).toLocaleString("en-US")} ${a.unit})`);
  }
  return [{ name: "hash chain, one link per event (hashed text + SHA-256 + previous chain)", unit: "links/s", value: links }];
}
