/**
 * File upload throughput through the API against raw disk writes of the same bytes, in the same run:
 * multipart uploads (`POST /v1/sessions/{id}/files`, over a real port) are streamed to the local blob
 * store (hashed, staged, synced, renamed), referenced and recorded as events; the baseline writes the
 * same bytes to files with the same durability (write, fsync, close, rename), nothing else. Each upload
 * holds different bytes (a counter in its first bytes), so no write is saved by deduplication.
 *
 * The client runs in this process (its work is mostly the runtime's native body streaming); uploads go
 * one at a time and four at once.
 */
import { open, rename } from "node:fs/promises";
import { loadConfig } from "../src/config.ts";
import { silentLogger } from "../src/core/logger.ts";
import { startServer } from "../src/main.ts";
import { compare, NO_RATE_LIMITS, tempDir, type Result } from "./lib.ts";

const KEY = "bench-key-0123456789abcdef";

/** `count` distinct payloads of `size` bytes: random bytes, with the payload's number in its first 8. */
function payloads(size: number, count: number): Uint8Array[] {
  const base = new Uint8Array(size);
  for (let i = 0; i < size; i += 65_536) crypto.getRandomValues(base.subarray(i, Math.min(size, i + 65_536)));
  return Array.from({ length: count }, (_, n) => {
    const copy = base.slice();
    new DataView(copy.buffer).setFloat64(0, n + Math.random());
    return copy;
  });
}

/** MB/s of `op` over every payload, `concurrency` at a time. */
async function mbPerSecond(items: Uint8Array[], concurrency: number, op: (bytes: Uint8Array, i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    for (let i = next++; i < items.length; i = next++) await op(items[i]!, i);
  }));
  const bytes = items.reduce((a, b) => a + b.byteLength, 0);
  return bytes / 1e6 / ((performance.now() - start) / 1000);
}

/** The baseline: the bytes to a new file, synced, renamed into place — what durability costs on this disk. */
async function rawWrite(dir: string, bytes: Uint8Array, i: number): Promise<void> {
  const tmp = `${dir}/${i}-${crypto.randomUUID()}.part`;
  const handle = await open(tmp, "wx", 0o600);
  await handle.write(bytes);
  await handle.sync();
  await handle.close();
  await rename(tmp, `${dir}/${i}-${crypto.randomUUID()}`);
}

export async function fileBenchmarks(quick: boolean): Promise<Result[]> {
  const t = tempDir("files");
  const raw = tempDir("files-raw");
  const server = await startServer(loadConfig({
    PORT: "0", DATA_DIR: t.dir, API_KEY: KEY, SQLITE_SYNCHRONOUS: "full", MAX_FILE_BYTES: String(8 * 1024 * 1024), ...NO_RATE_LIMITS,
  }), silentLogger);
  const results: Result[] = [];
  try {
    const session = (await (await fetch(`${server.url}/v1/sessions`, {
      method: "POST", headers: { "x-api-key": KEY, "content-type": "application/json" }, body: JSON.stringify({ user_id: "bench" }),
    })).json() as { id: string }).id;
    const upload = async (bytes: Uint8Array, i: number) => {
      const form = new FormData();
      form.append("file", new Blob([bytes], { type: "text/plain" }), `f${i}.bin`);
      const res = await fetch(`${server.url}/v1/sessions/${session}/files`, { method: "POST", headers: { "x-api-key": KEY }, body: form });
      if (res.status !== 201) throw new Error(`upload failed: ${res.status} ${await res.text()}`);
      await res.arrayBuffer();
    };
    const cases = [
      { label: "64 KiB", size: 64 * 1024, count: quick ? 60 : 400 },
      { label: "4 MiB", size: 4 * 1024 * 1024, count: quick ? 8 : 48 },
    ];
    for (const { label, size, count } of cases) {
      for (const concurrency of [1, 4]) {
        const rounds = quick ? 2 : 3;
        const { value, baseline } = await compare(rounds,
          () => mbPerSecond(payloads(size, count), concurrency, upload),
          () => mbPerSecond(payloads(size, count), concurrency, (bytes, i) => rawWrite(raw.dir, bytes, i)));
        results.push({
          name: `upload ${label} files, ${concurrency} at a time (multipart → blob store + events)`, unit: "MB/s", value,
          baselineName: "raw write + fsync + rename of the same bytes", baseline,
        });
      }
    }
  } finally {
    await server.shutdown("bench");
    t.remove();
    raw.remove();
  }
  return results;
}
