/**
 * `bun run bench` — every figure next to a baseline measured in the same run.
 * `bun run bench --quick` runs smaller counts (a smoke test, not figures to publish).
 */
import { apiBenchmarks } from "./api.ts";
import { eventStoreBenchmarks } from "./eventstore.ts";
import { queueBenchmarks } from "./queue.ts";
import { turnBenchmarks } from "./turns.ts";
import { printTable, type Result } from "./lib.ts";
import { cpus, totalmem } from "node:os";

const quick = process.argv.includes("--quick");
console.log(`Agentry benchmarks — Bun ${Bun.version}, ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${Math.round(totalmem() / 2 ** 30)} GiB${quick ? " (quick)" : ""}\n`);
const results: Result[] = [...(await eventStoreBenchmarks(quick)), ...(await apiBenchmarks(quick)), ...(await queueBenchmarks(quick)), ...(await turnBenchmarks(quick))];
printTable(results);
process.exit(0);
