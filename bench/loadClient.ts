/**
 * The load generator for HTTP throughput benchmarks, run as its own process so that the client's
 * work is not counted against the server it measures (they would share one JS thread otherwise).
 *
 *   bun bench/loadClient.ts <url> <requests> <concurrency> [header:value …]
 *
 * Issues `requests` GETs over `concurrency` loops, each back to back, and prints
 * {"rps": …} on stdout. Any status other than 200 fails the run.
 */
export {};
const [url, requests, concurrency, ...headerArgs] = process.argv.slice(2);
if (!url || !requests || !concurrency) {
  console.error("usage: bun bench/loadClient.ts <url> <requests> <concurrency> [header:value …]");
  process.exit(2);
}
const headers = Object.fromEntries(headerArgs.map((h) => [h.slice(0, h.indexOf(":")), h.slice(h.indexOf(":") + 1)]));
const count = Number(requests);
let next = 0;
const start = performance.now();
await Promise.all(Array.from({ length: Number(concurrency) }, async () => {
  while (next++ < count) {
    const res = await fetch(url, { headers });
    if (res.status !== 200) throw new Error(`${url}: ${res.status}`);
    await res.arrayBuffer();
  }
}));
console.log(JSON.stringify({ rps: (count / (performance.now() - start)) * 1000 }));
