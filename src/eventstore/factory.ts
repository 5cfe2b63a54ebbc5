/** Builds the configured EventStore adapter. */
import { join } from "node:path";
import type { Config } from "../config.ts";
import { EsdbEventStore } from "./adapters/esdb.ts";
import { MemoryEventStore } from "./adapters/memory.ts";
import { SqliteEventStore } from "./adapters/sqlite.ts";
import type { EventStore } from "./port.ts";

export function createEventStore(config: Config): EventStore {
  switch (config.eventStore) {
    case "sqlite":
      return new SqliteEventStore({
        path: join(config.dataDir, "events.sqlite"),
        synchronous: config.sqliteSynchronous,
        pollIntervalMs: config.sqlitePollIntervalMs,
      });
    case "esdb":
      return new EsdbEventStore({ connectionString: config.eventStoreConnectionString! });
    case "memory":
      return new MemoryEventStore();
    default: {
      const unknown: never = config.eventStore;
      throw new Error(`Unknown event store ${String(unknown)}`);
    }
  }
}

/**
 * The configured store for a command that only reads, beside a running server: SQLite opened read-only
 * (it never takes the write lock), EventStoreDB as usual. The memory store keeps nothing between
 * processes, so there is nothing to read.
 */
export function createReadOnlyEventStore(config: Config): EventStore {
  if (config.eventStore === "memory") throw new Error("EVENT_STORE=memory keeps nothing between processes: there is nothing to read");
  if (config.eventStore === "sqlite") return new SqliteEventStore({ path: join(config.dataDir, "events.sqlite"), readonly: true });
  return createEventStore(config);
}
