import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteEventStore } from "../../src/eventstore/adapters/sqlite.ts";
import { eventStoreContract } from "./eventStore.contract.ts";

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
