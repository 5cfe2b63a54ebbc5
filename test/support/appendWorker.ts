/**
 * A separate process that appends to a SQLite event store and reports each acknowledged append on
 * stdout as one JSON line, for the durability (kill -9) and multi-process tests.
 *
 *   bun test/support/appendWorker.ts <db path> <stream prefix> <count> <mode: distinct|contended> [synchronous]
 *
 * distinct:  one event per append to `<prefix>-<i % 7>` with expected revision "any", eight appends
 *            in flight at a time, so the store commits them in groups (one fsync for several).
 * contended: every append goes to `<prefix>` with the exact revision last seen, retrying on conflict.
 */
import { SqliteEventStore } from "../../src/eventstore/adapters/sqlite.ts";
import { WrongExpectedVersionError } from "../../src/eventstore/errors.ts";

const [path, prefix, countText, mode, synchronous] = process.argv.slice(2);
const store = new SqliteEventStore({ path: path!, synchronous: synchronous === "normal" ? "normal" : "full" });
const count = Number(countText);
let conflicts = 0;
const inFlight = new Set<Promise<void>>();

for (let i = 0; i < count; i++) {
  const id = crypto.randomUUID();
  if (mode === "contended") {
    for (;;) {
      let last: bigint | "no_stream" = "no_stream";
      try {
        for await (const e of store.readStream(prefix!, { direction: "backwards", maxCount: 1 })) last = e.revision;
      } catch {
        /* stream not created yet */
      }
      try {
        const r = await store.appendToStream(prefix!, [{ id, type: "Tick", data: { i, pid: process.pid } }], { expectedRevision: last });
        process.stdout.write(JSON.stringify({ id, stream: prefix, revision: String(r.nextExpectedRevision), position: String(r.position) }) + "\n");
        break;
      } catch (err) {
        if (!(err instanceof WrongExpectedVersionError)) throw err;
        conflicts++;
      }
    }
  } else {
    const stream = `${prefix}-${i % 7}`;
    // Acknowledged (printed) only once its append resolved, that is, after its group's commit.
    const tracked: Promise<void> = store.appendToStream(stream, [{ id, type: "Tick", data: { i, pid: process.pid } }]).then((r) => {
      process.stdout.write(JSON.stringify({ id, stream, revision: String(r.nextExpectedRevision), position: String(r.position) }) + "\n");
    }).finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
    if (inFlight.size >= 8) await Promise.race(inFlight);
  }
}
await Promise.all(inFlight);
process.stderr.write(JSON.stringify({ conflicts }) + "\n");
await store.close();
