/**
 * A separate process that seals one secret for each of several apps through its own secret box over a
 * shared SQLite store, for the multi-process secret-box test. The master key comes from
 * SECRETS_MASTER_KEY in the environment.
 *
 *   bun test/support/secretsWorker.ts <db path> <start at, ms since the epoch> <app id> [app id …]
 *
 * Waits until the start time (so two workers begin together), seals every app's secret at once, and
 * prints one JSON line: `{"<app id>": "<sealed value>", …}`.
 */
import { SqliteEventStore } from "../../src/eventstore/adapters/sqlite.ts";
import { createSecretBox } from "../../src/secrets/secretBox.ts";

const [path, startAt, ...apps] = process.argv.slice(2);
const store = new SqliteEventStore({ path: path! });
const box = createSecretBox({
  store,
  config: { dataDir: "unused", eventStore: "sqlite", secrets: { masterKey: process.env.SECRETS_MASTER_KEY, previousMasterKeys: [] } },
});
await Bun.sleep(Math.max(0, Number(startAt) - Date.now()));
const sealed = await Promise.all(apps.map((app) => box.seal(app, `secret of ${app}`)));
process.stdout.write(JSON.stringify(Object.fromEntries(apps.map((app, i) => [app, sealed[i]]))) + "\n");
await store.close();
