/**
 * Operator commands for the secret box (src/secrets/secretBox.ts):
 *
 *   bun run secrets rotate    re-wrap every app's data keys under the current SECRETS_MASTER_KEY
 *
 * Uses the same configuration as the server (DATA_DIR, EVENT_STORE, SECRETS_MASTER_KEY,
 * SECRETS_PREVIOUS_MASTER_KEYS). Rotation appends `DataKeyRewrapped` events and rewrites nothing, so it
 * may run while servers are up and may be run again; see docs/operations.md for the steps. It prints a
 * summary of ids and counts, never a key.
 */
import { ConfigError, loadConfig } from "../config.ts";
import { createLogger } from "../core/logger.ts";
import { createEventStore } from "../eventstore/factory.ts";
import { createSecretBox, SecretBoxError } from "../secrets/secretBox.ts";

const USAGE = "usage: bun run secrets rotate";

async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  if (command !== "rotate" || rest.length > 0) {
    console.error(USAGE);
    return 2;
  }
  const config = loadConfig();
  if (config.eventStore === "memory") {
    console.error("EVENT_STORE=memory keeps nothing between processes: there is nothing to rotate");
    return 2;
  }
  const logger = createLogger(config.logLevel);
  const store = createEventStore(config);
  try {
    const box = createSecretBox({ store, config, logger });
    const report = await box.rotateMasterKey();
    console.log(JSON.stringify(report, null, 2));
    if (report.failed.length > 0) {
      console.error(
        `${report.failed.length} data key(s) are wrapped by master keys this configuration lacks ` +
          `(${[...new Set(report.failed.map((f) => f.master_key_id))].join(", ")}): add them to SECRETS_PREVIOUS_MASTER_KEYS and run again`,
      );
      return 1;
    }
    return 0;
  } finally {
    await store.close();
  }
}

try {
  process.exit(await main(process.argv.slice(2)));
} catch (err) {
  if (err instanceof ConfigError || err instanceof SecretBoxError) {
    console.error(err.message);
    process.exit(2);
  }
  throw err;
}
