/**
 * One harness for tests that run the server as real child processes: start one with an environment,
 * wait until it says it is ready, and read its log lines. Every process started here is killed by
 * `killAll` (call it in afterAll/afterEach).
 */
import { join } from "node:path";
import { TEST_KEY } from "./api.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");
const started: Array<ReturnType<typeof Bun.spawn>> = [];

export interface ServerProcess {
  child: ReturnType<typeof Bun.spawn>;
  /** The HTTP base URL (empty for a worker). */
  url: string;
  /** Every stdout line so far (JSON log lines). */
  lines: string[];
  /** Resolves with the first log line containing `text` (already seen or still to come). */
  waitForLine(text: string, timeoutMs?: number): Promise<string>;
}

/** Environment every test server process starts from: loopback, fast appends, the test key. */
export const BASE_ENV = {
  PORT: "0", HOST: "127.0.0.1", API_KEY: TEST_KEY, SQLITE_SYNCHRONOUS: "normal", SQLITE_POLL_INTERVAL_MS: "20", LOG_LEVEL: "info",
};

/** Spawns `bun src/main.ts` and waits until it is listening (role all/api) or running (worker). */
export async function spawnServer(env: Record<string, string>): Promise<ServerProcess> {
  const child = Bun.spawn(["bun", MAIN], { env: { ...process.env, ...BASE_ENV, ...env }, stdout: "pipe", stderr: "pipe" });
  started.push(child);
  const lines: string[] = [];
  const watchers = new Set<() => void>();
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    let buffer = "";
    for await (const chunk of stream) {
      buffer += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        lines.push(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
      }
      for (const w of [...watchers]) w();
    }
    for (const w of [...watchers]) w();
  };
  void collect(child.stdout as ReadableStream<Uint8Array>);
  void collect(child.stderr as ReadableStream<Uint8Array>);
  const waitForLine = (text: string, timeoutMs = 30_000) => new Promise<string>((resolve, reject) => {
    const check = () => {
      const line = lines.find((l) => l.includes(text));
      if (line !== undefined) {
        done();
        resolve(line);
      } else if (child.exitCode !== null) {
        done();
        reject(new Error(`process exited (${child.exitCode}) before "${text}":\n${lines.join("\n")}`));
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no "${text}" within ${timeoutMs} ms:\n${lines.join("\n")}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      watchers.delete(check);
    };
    watchers.add(check);
    void child.exited.then(check);
    check();
  });
  const worker = env.ROLE === "worker";
  const ready = await waitForLine(worker ? "agentry worker running" : "agentry listening");
  return { child, url: worker ? "" : (JSON.parse(ready).url as string), lines, waitForLine };
}

export async function killAll(): Promise<void> {
  for (const p of started.splice(0)) p.kill("SIGKILL");
}
