/**
 * Headless Chromium for browser tests: Debian's `chromium` (or CHROMIUM_PATH), started as a child
 * process with its DevTools endpoint on a loopback port, and driven by playwright-core over that
 * WebSocket. Not playwright's own launch, which talks to the browser over a pipe: in a Bun process that
 * also serves the HTTP under test, the browser's messages on that pipe were seen held back for many
 * seconds (until other traffic came), failing tests at random. A missing binary is an error (the tests
 * fail, they do not skip).
 *
 * The browser does not outlive the test process: it is killed when the process exits or is interrupted,
 * even if a test failed before close(). Its stderr is read to the end (a pipe nobody reads fills up and
 * blocks the browser), and /dev/shm is not used (containers often give it 64 MB, which crashes tabs).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser } from "playwright-core";

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

export interface RunningChromium {
  browser: Browser;
  close(): Promise<void>;
}

export async function launchChromium(): Promise<RunningChromium> {
  const profile = mkdtempSync(join(tmpdir(), "agentry-chromium-"));
  const child = Bun.spawn([
    CHROMIUM_PATH, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
    "--disable-extensions", "--disable-background-networking", "--disable-dev-shm-usage",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
    `--user-data-dir=${profile}`, "about:blank",
  ], { stdout: "ignore", stderr: "pipe" });
  // Synchronous, for "exit" (where nothing asynchronous runs any more).
  const killNow = () => {
    child.kill("SIGKILL");
    rmSync(profile, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals) => {
    killNow();
    forget();
    // Then what the signal would have done without this handler: end the process.
    process.kill(process.pid, signal);
  };
  const forget = () => {
    process.off("exit", killNow);
    for (const signal of SIGNALS) process.off(signal, onSignal);
  };
  process.on("exit", killNow);
  for (const signal of SIGNALS) process.on(signal, onSignal);
  try {
    const endpoint = await devToolsEndpoint(child.stderr, 30_000);
    const browser = await chromium.connectOverCDP(endpoint);
    return {
      browser,
      async close() {
        await browser.close().catch(() => {});
        child.kill();
        await child.exited;
        forget();
        rmSync(profile, { recursive: true, force: true });
      },
    };
  } catch (err) {
    killNow();
    forget();
    throw err;
  }
}

const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/**
 * Reads Chromium's stderr until it names its DevTools WebSocket (bounded), then keeps reading it in the
 * background, discarding it, until the browser closes it.
 */
async function devToolsEndpoint(stderr: ReadableStream<Uint8Array>, timeoutMs: number): Promise<string> {
  const reader = stderr.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const next = await Promise.race([reader.read(), Bun.sleep(deadline - Date.now()).then(() => null)]);
    if (next === null || next.done) break;
    text += decoder.decode(next.value, { stream: true });
    const found = /DevTools listening on (ws:\/\/127\.0\.0\.1:\d+\/devtools\/browser\/[\w-]+)/.exec(text);
    if (found) {
      void drain(reader);
      return found[1]!;
    }
  }
  void drain(reader);
  throw new Error(`Chromium (${CHROMIUM_PATH}) did not open its DevTools endpoint: ${text.slice(-500)}`);
}

async function drain(reader: { read(): Promise<{ done?: boolean }>; releaseLock(): void }): Promise<void> {
  try {
    for (;;) if ((await reader.read()).done) return;
  } catch {
    // The browser is gone: nothing more to read.
  } finally {
    reader.releaseLock();
  }
}
