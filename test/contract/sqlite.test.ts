import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteEventStore } from "../../src/eventstore/adapters/sqlite.ts";
import { describe, expect, test } from "bun:test";
import { collect } from "../../src/eventstore/port.ts";
import { ev, eventStoreContract } from "./eventStore.contract.ts";

for (const synchronous of ["full", "normal"] as const) {
  eventStoreContract(`sqlite (synchronous=${synchronous})`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "agentry-contract-"));
    const store = new SqliteEventStore({ path: join(dir, "events.sqlite"), synchronous });
    return {
      store,
      cleanup: async () => {
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  });
}

describe("sqlite erasure", () => {
  test("an erased stream's content is gone from the database file and its write-ahead log, not only from reads", async () => {
    const dir = mkdtempSync(join(tmpdir(), "agentry-erase-"));
    const path = join(dir, "events.sqlite");
    const store = new SqliteEventStore({ path });
    try {
      const marker = "zebra-marmalade-7f3c";
      for (let i = 0; i < 20; i++) await store.appendToStream("session-erased", [ev("MessageSent", { content: `${marker} ${i}` })]);
      await store.appendToStream("session-kept", [ev("MessageSent", { content: "kept-content-91ab" })]);
      const fileText = () => [path, `${path}-wal`].filter(existsSync).map((p) => readFileSync(p).toString("latin1")).join("");
      expect(fileText()).toContain(marker);
      const r = await store.eraseStreams([{ stream: "session-erased" }]);
      expect(r).toMatchObject({ erased: ["session-erased"], reclaim: "vacuumed" });
      expect(r.reclaimError).toBeUndefined();
      expect(fileText()).not.toContain(marker);
      expect(fileText()).toContain("kept-content-91ab");
      expect((await collect(store.readStream("session-kept"))).length).toBe(1);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
