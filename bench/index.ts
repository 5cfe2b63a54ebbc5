/**
 * `bun run bench` — every figure next to a baseline measured in the same run.
 * `bun run bench --quick` runs smaller counts (a smoke test, not figures to publish).
 * `bun run bench sse [api …]` runs only the named groups: eventstore, api, queue, turns, sse, ratelimit, memory, files, compat.
 */
import { apiBenchmarks } from "./api.ts";
import { compatBenchmarks } from "./compat.ts";
import { eventStoreBenchmarks } from "./eventstore.ts";
import { fileBenchmarks } from "./files.ts";
import { memoryBenchmarks } from "./memory.ts";
import { queueBenchmarks } from "./queue.ts";
import { rateLimitBenchmarks } from "./ratelimit.ts";
import { sseBenchmarks } from "./sse.ts";
import { turnBenchmarks } from "./turns.ts";
import { printTable, type Result } from "./lib.ts";
import { cpus, totalmem } from "node:os";

const quick = process.argv.includes("--quick");
const groups: Record<string, (quick: boolean) => Promise<Result[]>> = {
  eventstore: eventStoreBenchmarks, api: apiBenchmarks, queue: queueBenchmarks, turns: turnBenchmarks, sse: sseBenchmarks,
  ratelimit: rateLimitBenchmarks, memory: memoryBenchmarks, files: fileBenchmarks, compat: compatBenchmarks,
};
const named = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const unknown = named.filter((n) => !(n in groups));
if (unknown.length) {
  console.error(`unknown benchmark ${unknown.join(", ")}; choose from ${Object.keys(groups).join(", ")}`);
  process.exit(2);
}
console.log(`Agentry benchmarks — Bun ${Bun.version}, ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${Math.round(totalmem() / 2 ** 30)} GiB${quick ? " (quick)" : ""}\n`);
const results: Result[] = [];
for (const name of named.length ? named : Object.keys(groups)) results.push(...(await groups[name]!(quick)));
printTable(results);
process.exit(0);
