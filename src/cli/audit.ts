/**
 * Auditors' commands:
 *
 *   bun run audit verify <stream> [<stream> …]   recompute these streams' hash chains
 *   bun run audit verify --all                   every stream in the store
 *   bun run audit verify --file export.ndjson    an exported file (GET /v1/audit/…?format=ndjson), offline
 *
 * Prints one JSON line per stream (its head — last revision and chain — to anchor elsewhere, and its
 * first break, if any), then a summary line. Exit status 0 when every chain holds, 1 when one is broken,
 * 2 on bad usage. Uses the server's configuration (DATA_DIR, EVENT_STORE, …) and opens a SQLite store
 * read-only, so it runs beside a running server.
 */
import { byStream, verifyStream, type StreamVerification } from "../audit/chain.ts";
import { NdjsonFormatError, parseAuditNdjson } from "../audit/ndjson.ts";
import { streamNames, verificationView, verifyStoredStream } from "../audit/verifyStore.ts";
import { ConfigError, loadConfig } from "../config.ts";
import { createReadOnlyEventStore } from "../eventstore/factory.ts";
import type { EventStore } from "../eventstore/port.ts";

const USAGE = "usage: bun run audit verify <stream> [<stream> ...] | --all | --file <export.ndjson>";

function openStore(): EventStore {
  const config = loadConfig();
  if (config.eventStore === "memory") throw new ConfigError("EVENT_STORE", "memory keeps nothing between processes: there is nothing to verify");
  return createReadOnlyEventStore(config);
}

function report(results: Iterable<StreamVerification>): number {
  let streams = 0;
  let events = 0;
  let broken = 0;
  for (const v of results) {
    streams++;
    events += v.events;
    if (!v.ok) broken++;
    console.log(JSON.stringify(verificationView(v)));
  }
  console.log(JSON.stringify({ object: "chain_verification_summary", ok: broken === 0, streams, events, broken }));
  return broken === 0 ? 0 : 1;
}

export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  if (command !== "verify" || rest.length === 0) {
    console.error(USAGE);
    return 2;
  }
  if (rest[0] === "--file") {
    if (rest.length !== 2) {
      console.error(USAGE);
      return 2;
    }
    const text = await Bun.file(rest[1]!).text();
    const groups = byStream(parseAuditNdjson(text));
    return report([...groups].map(([stream, events]) => verifyStream(stream, events)));
  }
  const all = rest.length === 1 && rest[0] === "--all";
  if (!all && rest.some((a) => a.startsWith("--"))) {
    console.error(USAGE);
    return 2;
  }
  const store = openStore();
  try {
    const names = all ? await streamNames(store) : rest;
    const results: StreamVerification[] = [];
    let missing = 0;
    for (const name of names) {
      const v = await verifyStoredStream(store, name);
      if (v) results.push(v);
      else {
        missing++;
        console.error(`no stream ${name}`);
      }
    }
    const status = report(results);
    return missing ? Math.max(status, 1) : status;
  } finally {
    await store.close();
  }
}

if (import.meta.main) {
  try {
    process.exit(await main(process.argv.slice(2)));
  } catch (err) {
    if (err instanceof ConfigError || err instanceof NdjsonFormatError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
}
