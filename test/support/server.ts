/** Starts the real server on a free port with a throwaway data folder, for API tests. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/core/logger.ts";
import type { AppDeps } from "../../src/http/app.ts";
import { startServer, type RunningServer } from "../../src/main.ts";

export interface TestServer extends RunningServer {
  dataDir: string;
  stop(): Promise<void>;
}

export async function startTestServer(env: Record<string, string> = {}, extra: Pick<AppDeps, "plugins"> = {}): Promise<TestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), "agentry-api-"));
  // Rate limits off unless the test sets them: the suite sends many requests per key quickly.
  const config = loadConfig({ PORT: "0", DATA_DIR: dataDir, SQLITE_SYNCHRONOUS: "normal", RATE_LIMIT_PER_MINUTE: "0", RATE_LIMIT_HEAVY_PER_MINUTE: "0", ...env });
  const server = await startServer(config, silentLogger, extra).catch((err) => {
    // A server that does not start (a test of start-up refusals) leaves no data folder behind.
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  });
  return {
    ...server,
    dataDir,
    async stop() {
      await server.shutdown("test");
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A response body as JSON, typed loosely for assertions. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const json = (res: Response): Promise<any> => res.json();
