/** Reads what the public API keeps to itself straight from a test's SQLite event store file. */
import { join } from "node:path";
import { SqliteEventStore } from "../../src/eventstore/adapters/sqlite.ts";

/** The `runner_id` of each attempt of a job (the process that ran it), in order. */
export async function runnersOf(dataDir: string, jobId: string): Promise<string[]> {
  const store = new SqliteEventStore({ path: join(dataDir, "events.sqlite") });
  try {
    const runners: string[] = [];
    for await (const e of store.readStream(`job-${jobId}`)) {
      if (e.type === "JobStarted") runners.push((e.data as { runner_id: string }).runner_id);
    }
    return runners;
  } finally {
    await store.close();
  }
}
