/**
 * The SQLite adapter across real processes: acknowledged appends survive kill -9, and several
 * processes can share one store file.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteEventStore } from "../../src/eventstore/adapters/sqlite.ts";
import { collect } from "../../src/eventstore/port.ts";
import { chainEventOf, verifyStream } from "../../src/audit/chain.ts";

interface Ack { id: string; stream: string; revision: string; position: string }

const WORKER = join(import.meta.dir, "../support/appendWorker.ts");
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tempDb = () => {
  const dir = mkdtempSync(join(tmpdir(), "agentry-proc-"));
  dirs.push(dir);
  return join(dir, "events.sqlite");
};

function spawnWorker(args: string[]) {
  return Bun.spawn(["bun", WORKER, ...args], { stdout: "pipe", stderr: "pipe" });
}

/** Reads acknowledgement lines until `until` says stop (or the stream ends). */
async function readAcks(stdout: ReadableStream<Uint8Array>, until: (acks: Ack[]) => boolean): Promise<Ack[]> {
  const acks: Ack[] = [];
  const reader = stdout.getReader();
  let buffered = "";
  while (!until(acks)) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += new TextDecoder().decode(value);
    const lines = buffered.split("\n");
    buffered = lines.pop()!;
    for (const line of lines) if (line.trim()) acks.push(JSON.parse(line));
  }
  reader.releaseLock();
  return acks;
}

describe("sqlite event store across processes", () => {
  for (const synchronous of ["full", "normal"]) {
    test(`every acknowledged append survives kill -9 of the writer (synchronous=${synchronous})`, async () => {
      const path = tempDb();
      const worker = spawnWorker([path, "durable", "100000", "distinct", synchronous]);
      const acks = await readAcks(worker.stdout, (a) => a.length >= 400);
      worker.kill("SIGKILL");
      expect(await worker.exited).not.toBe(0);
      expect(acks.length).toBeGreaterThanOrEqual(400);

      const store = new SqliteEventStore({ path });
      try {
        const all = await collect(store.readAll({ filter: { streamPrefixes: ["durable-"] } }));
        const byId = new Map(all.map((e) => [e.id, e]));
        for (const ack of acks) {
          const e = byId.get(ack.id);
          expect(e).toBeDefined();
          expect(e!.streamId).toBe(ack.stream);
          expect(e!.revision.toString()).toBe(ack.revision);
          expect(e!.position.toString()).toBe(ack.position);
        }
        // The store is consistent after the crash: revisions gapless, and it accepts new appends.
        for (let s = 0; s < 7; s++) {
          const events = await collect(store.readStream(`durable-${s}`));
          expect(events.map((e) => Number(e.revision))).toEqual(events.map((_, i) => i));
        }
        const next = await store.appendToStream("durable-0", [{ id: crypto.randomUUID(), type: "After", data: {} }]);
        expect(next.position > BigInt(acks[acks.length - 1]!.position)).toBe(true);
      } finally {
        await store.close();
      }
    });
  }

  test("two processes share one store file: unique increasing positions, gapless revisions, no lost write", async () => {
    const path = tempDb();
    new SqliteEventStore({ path }).close(); // create the schema before the race
    const workers = [spawnWorker([path, "left", "300", "distinct", "normal"]), spawnWorker([path, "right", "300", "distinct", "normal"])];
    const contended = [spawnWorker([path, "shared-1", "150", "contended", "normal"]), spawnWorker([path, "shared-1", "150", "contended", "normal"])];
    const all = [...workers, ...contended];
    const acks = (await Promise.all(all.map((w) => readAcks(w.stdout, () => false)))).flat();
    for (const w of all) expect(await w.exited).toBe(0);
    expect(acks.length).toBe(900);

    const store = new SqliteEventStore({ path });
    try {
      const events = await collect(store.readAll());
      expect(events.length).toBe(900);
      expect(new Set(events.map((e) => e.position)).size).toBe(900);
      for (let i = 1; i < events.length; i++) expect(events[i - 1]!.position < events[i]!.position).toBe(true);
      const shared = await collect(store.readStream("shared-1"));
      expect(shared.map((e) => Number(e.revision))).toEqual(Array.from({ length: 300 }, (_, i) => i));
      expect(new Set(acks.filter((a) => a.stream === "shared-1").map((a) => a.revision)).size).toBe(300);
      // Each process linked its events to the other's: one hash chain per stream.
      for (const stream of new Set(events.map((e) => e.streamId))) {
        expect(verifyStream(stream, (await collect(store.readStream(stream))).map(chainEventOf))).toMatchObject({ ok: true, unchained: 0 });
      }
    } finally {
      await store.close();
    }
  });

  test("a subscription in one process sees appends made by another", async () => {
    const path = tempDb();
    const store = new SqliteEventStore({ path, pollIntervalMs: 20 });
    try {
      const sub = store.subscribeToAll({ filter: { streamPrefixes: ["remote-"] } });
      const worker = spawnWorker([path, "remote", "50", "distinct", "normal"]);
      expect(await worker.exited).toBe(0);
      const seen: string[] = [];
      const deadline = Date.now() + 10_000;
      while (seen.length < 50 && Date.now() < deadline) {
        const batch = await Promise.race([sub.nextBatch(100), Bun.sleep(200).then(() => [])]);
        seen.push(...batch.map((e) => e.id));
      }
      expect(seen.length).toBe(50);
      await sub.unsubscribe();
    } finally {
      await store.close();
    }
  });
});
