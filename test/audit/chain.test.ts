/**
 * Tamper evidence (issue 11): the hash chain verifier, pure and over a real SQLite file edited behind
 * the store's back (an edited, a deleted and two reordered events, each detected and located), the
 * `bun run audit verify` command beside an open writer and on exported NDJSON files, and the HTTP route.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { verifyStream, type ChainEvent } from "../../src/audit/chain.ts";
import { parseAuditNdjson } from "../../src/audit/ndjson.ts";
import { verifyStoredStream } from "../../src/audit/verifyStore.ts";
import { auditView } from "../../src/app/audit.ts";
import { SqliteEventStore } from "../../src/eventstore/adapters/sqlite.ts";
import { chainEvents, GENESIS } from "../../src/eventstore/chain.ts";
import { collect } from "../../src/eventstore/port.ts";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const ev = (type: string, data: unknown = {}) => ({ id: crypto.randomUUID(), type, data, metadata: { app_id: "app_t", actor: "key:k1" } });

/** A chained stream built in memory, as a store would write it. */
function chained(stream: string, n: number, from = 0n, prev = GENESIS): ChainEvent[] {
  const events = Array.from({ length: n }, (_, i) => ev(`E${i}`, { i, text: `event ${i}` }));
  const { metadata } = chainEvents(stream, prev, events);
  return events.map((e, i) => ({ stream, revision: from + BigInt(i), id: e.id, type: e.type, data: e.data, metadata: metadata[i]! }));
}

describe("the chain verifier", () => {
  test("an intact stream verifies and reports its head", () => {
    const events = chained("s-1", 5);
    const v = verifyStream("s-1", events);
    expect(v.ok).toBe(true);
    expect(v.head).toEqual({ revision: 4n, chain: events[4]!.metadata.chain as string });
  });

  test("an edited event, a changed chain, a missing one, and reordered ones are each located", () => {
    const edited = chained("s-1", 5);
    edited[2] = { ...edited[2]!, data: { i: 2, text: "changed" } };
    expect(verifyStream("s-1", edited).break).toMatchObject({ revision: 2n, kind: "edited" });

    const rechained = chained("s-1", 5);
    rechained[1] = { ...rechained[1]!, metadata: { ...rechained[1]!.metadata, actor: "key:other" } };
    expect(verifyStream("s-1", rechained).break).toMatchObject({ revision: 1n, kind: "edited" });

    const gap = chained("s-1", 5).filter((e) => e.revision !== 3n);
    expect(verifyStream("s-1", gap).break).toMatchObject({ revision: 3n, kind: "missing" });

    const headless = chained("s-1", 5).slice(1);
    expect(verifyStream("s-1", headless).break).toMatchObject({ revision: 0n, kind: "missing" });

    // Where each belongs: after the event now at this revision (its predecessor, possibly moved too).
    for (const [a, b, after] of [[1, 3, "after the event now at revision 2"], [2, 3, "after the event now at revision 3"], [0, 4, "after the event now at revision 3"], [3, 4, "after the event now at revision 4"], [0, 1, "after the event now at revision 1"]] as const) {
      const swapped = chained("s-1", 5);
      const x = swapped[a]!;
      const y = swapped[b]!;
      swapped[a] = { ...y, revision: x.revision };
      swapped[b] = { ...x, revision: y.revision };
      const v = verifyStream("s-1", swapped);
      expect(v.break).toMatchObject({ revision: BigInt(a), kind: "reordered" });
      expect(v.break!.detail).toContain(after);
    }

    const backwards = chained("s-1", 4);
    [backwards[1], backwards[2]] = [backwards[2]!, backwards[1]!];
    expect(verifyStream("s-1", backwards).break).toMatchObject({ revision: 1n, kind: "reordered" });
  });

  test("events written before the chain are counted; the chain after them starts from the genesis", () => {
    const legacy: ChainEvent[] = [0n, 1n].map((revision) => ({ stream: "s-1", revision, id: crypto.randomUUID(), type: "Old", data: {}, metadata: {} }));
    const v = verifyStream("s-1", [...legacy, ...chained("s-1", 3, 2n)]);
    expect(v).toMatchObject({ ok: true, unchained: 2, events: 5 });
    // After chained events, an event without a chain is a break.
    const stripped = chained("s-1", 3);
    stripped[2] = { ...stripped[2]!, metadata: {} };
    expect(verifyStream("s-1", stripped).break).toMatchObject({ revision: 2n, kind: "edited" });
  });

  test("a stream reopened after a soft delete starts again from the genesis", () => {
    expect(verifyStream("s-1", chained("s-1", 3, 7n)).ok).toBe(true);
  });
});

describe("tampering with the SQLite file", () => {
  let dir: string;
  let path: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "agentry-chain-"));
    path = join(dir, "events.sqlite");
    const store = new SqliteEventStore({ path });
    for (const s of ["edit-1", "delete-1", "reorder-1", "intact-1"]) {
      for (let i = 0; i < 6; i++) await store.appendToStream(s, [ev(`Step${i}`, { i, note: `${s} ${i}` })]);
    }
    await store.close();
    const db = new Database(path);
    db.run(`UPDATE events SET data = '{"i":2,"note":"rewritten"}' WHERE stream = 'edit-1' AND revision = 2`);
    db.run(`DELETE FROM events WHERE stream = 'delete-1' AND revision = 3`);
    // Swap revisions 1 and 4 (through a free revision: (stream, revision) is unique).
    db.run(`UPDATE events SET revision = -1 WHERE stream = 'reorder-1' AND revision = 1`);
    db.run(`UPDATE events SET revision = 1 WHERE stream = 'reorder-1' AND revision = 4`);
    db.run(`UPDATE events SET revision = 4 WHERE stream = 'reorder-1' AND revision = -1`);
    db.close();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("each change is detected and located: stream, revision and kind", async () => {
    const store = new SqliteEventStore({ path, readonly: true });
    try {
      expect((await verifyStoredStream(store, "edit-1"))!.break).toMatchObject({ stream: "edit-1", revision: 2n, kind: "edited" });
      expect((await verifyStoredStream(store, "delete-1"))!.break).toMatchObject({ stream: "delete-1", revision: 3n, kind: "missing" });
      expect((await verifyStoredStream(store, "reorder-1"))!.break).toMatchObject({ stream: "reorder-1", revision: 1n, kind: "reordered" });
      expect((await verifyStoredStream(store, "intact-1"))!.ok).toBe(true);
    } finally {
      await store.close();
    }
  });

  test("`audit verify --all` finds them beside a writer that holds the store open", async () => {
    const writer = new SqliteEventStore({ path });
    try {
      await writer.appendToStream("later-1", [ev("A")]);
      const out = await runCli(["verify", "--all"], { DATA_DIR: dir, EVENT_STORE: "sqlite" });
      expect(out.code).toBe(1);
      const lines = out.stdout.trim().split("\n").map((l) => JSON.parse(l));
      const broken = Object.fromEntries(lines.filter((l) => l.break).map((l) => [l.stream, [l.break.revision, l.break.kind]]));
      expect(broken).toEqual({ "edit-1": [2, "edited"], "delete-1": [3, "missing"], "reorder-1": [1, "reordered"] });
      expect(lines.at(-1)).toMatchObject({ object: "chain_verification_summary", ok: false, streams: 5, broken: 3 });
      const one = await runCli(["verify", "intact-1", "later-1"], { DATA_DIR: dir, EVENT_STORE: "sqlite" });
      expect(one.code).toBe(0);
    } finally {
      await writer.close();
    }
  });
});

test("two processes' stores appending to one stream in turn keep one chain (each links to the other's events)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "agentry-chain2-"));
  const a = new SqliteEventStore({ path: join(dir, "events.sqlite") });
  const b = new SqliteEventStore({ path: join(dir, "events.sqlite") });
  try {
    for (let i = 0; i < 6; i++) await (i % 2 ? b : a).appendToStream("shared-1", [ev(`E${i}`)], i % 3 === 0 ? {} : { expectedRevision: BigInt(i - 1) });
    const v = verifyStream("shared-1", (await collect(a.readStream("shared-1"))).map((e) => ({ ...e, stream: e.streamId })));
    expect(v).toMatchObject({ ok: true, events: 6 });
  } finally {
    await a.close();
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

describe("offline verification of an NDJSON export", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "agentry-ndjson-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("an export verifies; the same file with one event edited does not", async () => {
    const store = new SqliteEventStore({ path: join(dir, "events.sqlite") });
    for (let i = 0; i < 4; i++) {
      await store.appendToStream("session-a", [ev("Said", { i })]);
      await store.appendToStream("job-b", [ev("Did", { i, nested: { z: 1, a: [1, 2] } })]);
    }
    const lines = (await collect(store.readAll())).map((e) => JSON.stringify(auditView(e)));
    await store.close();
    expect([...parseAuditNdjson(lines.join("\n"))].length).toBe(8);

    const good = join(dir, "export.ndjson");
    writeFileSync(good, lines.join("\n") + "\n");
    const ok = await runCli(["verify", "--file", good], {});
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout.trim().split("\n").at(-1)!)).toMatchObject({ ok: true, streams: 2, events: 8 });

    const tampered = lines.map((l) => {
      const o = JSON.parse(l);
      if (o.stream === "job-b" && o.revision === 2) o.data.i = 99;
      return JSON.stringify(o);
    });
    const bad = join(dir, "tampered.ndjson");
    writeFileSync(bad, tampered.join("\n"));
    const refused = await runCli(["verify", "--file", bad], {});
    expect(refused.code).toBe(1);
    const report = refused.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(report.find((r) => r.stream === "job-b").break).toMatchObject({ revision: 2, kind: "edited" });
    expect(report.find((r) => r.stream === "session-a").ok).toBe(true);

    const dropped = join(dir, "dropped.ndjson");
    writeFileSync(dropped, lines.filter((l) => !(JSON.parse(l).stream === "session-a" && JSON.parse(l).revision === 1)).join("\n"));
    const gap = await runCli(["verify", "--file", dropped], {});
    expect(gap.stdout).toContain(`"kind":"missing"`);
    expect(gap.code).toBe(1);
  });
});

describe("GET /v1/audit/streams/{name}/verify", () => {
  const ROOT = "agr_chain-root-token-0123456789";
  let server: TestServer;
  let auditor: Api;
  let auditorKey: string;
  let root: Api;
  let sessionId: string;
  beforeAll(async () => {
    server = await startTestServer({ API_KEY: TEST_KEY, ADMIN_TOKEN: ROOT, SANDBOX_CHUNK_DELAY_MS: "0" });
    const client = api(server.url);
    const plain = api(server.url, "");
    root = { ...plain, get: (p, x) => plain.get(p, { authorization: `Bearer ${ROOT}`, ...x }), post: (p, b, x) => plain.post(p, b, { authorization: `Bearer ${ROOT}`, ...x }) };
    const key = await root.post("/v1/apps/app_default/keys", { name: "auditor", scopes: ["audit:read"] });
    expect(key.status).toBe(201);
    auditorKey = key.body.key;
    auditor = api(server.url, auditorKey);
    const s = await client.post("/v1/sessions", { user_id: "user-a" });
    sessionId = s.body.id;
    await client.post(`/v1/sessions/${sessionId}/messages`, { content: "hello", wait: true });
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  });

  test("a stream of the app verifies, through both doors; another app's stream or a data key is refused", async () => {
    const r = await auditor.get(`/v1/audit/streams/session-${sessionId}/verify`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ object: "chain_verification", stream: `session-${sessionId}`, ok: true, unchained: 0, break: null });
    expect(r.body.head.chain).toMatch(/^[0-9a-f]{64}$/);
    const m = await root.get(`/v1/apps/app_default/audit/streams/session-${sessionId}/verify`);
    expect(m.status).toBe(200);
    expect(m.body.head).toEqual(r.body.head);
    expect((await auditor.get("/v1/audit/streams/operator-root/verify")).status).toBe(404);
    expect((await auditor.get("/v1/audit/streams/session-nope/verify")).status).toBe(404);
    expect((await api(server.url).get(`/v1/audit/streams/session-${sessionId}/verify`)).status).toBe(403);
    expect((await api(server.url, "").get(`/v1/apps/app_default/audit/streams/session-${sessionId}/verify`)).status).toBe(401);
  });

  test("an NDJSON export of the session's history verifies offline", async () => {
    const r = await fetch(`${server.url}/v1/audit/sessions/${sessionId}/events?format=ndjson`, { headers: { "x-api-key": auditorKey } });
    expect(r.status).toBe(200);
    const events = [...parseAuditNdjson(await r.text())];
    expect(events.length).toBeGreaterThan(3);
    const streams = new Set(events.map((e) => e.stream));
    for (const stream of streams) expect(verifyStream(stream, events.filter((e) => e.stream === stream)).ok).toBe(true);
  });
});

async function runCli(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn(["bun", "run", join(import.meta.dir, "../../src/cli/audit.ts"), ...args], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env }, stdout: "pipe", stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}
