/**
 * The tenant directory: apps and keys in memory, folded from the store and kept current from it, so
 * two processes over one store agree on which keys work.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Repository } from "../../src/app/repository.ts";
import { StreamTails } from "../../src/app/streamTails.ts";
import { TenantDirectory } from "../../src/app/tenantDirectory.ts";
import { appDecider, type NewKey } from "../../src/domain/app/app.ts";
import { appEvents } from "../../src/domain/app/events.ts";
import { keyHash, keyPrefix, newApiKey } from "../../src/domain/app/keys.ts";
import { appStream } from "../../src/domain/streams.ts";
import { SqliteEventStore } from "../../src/eventstore/adapters/sqlite.ts";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function setup() {
  const dir = mkdtempSync(join(tmpdir(), "agentry-tenants-"));
  const path = join(dir, "events.sqlite");
  const open = () => {
    const store = new SqliteEventStore({ path, synchronous: "normal", pollIntervalMs: 20 });
    cleanups.push(() => store.close());
    return store;
  };
  const store = open();
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const apps = new Repository(store, appDecider, appEvents, appStream, new StreamTails({ maxStreams: 10, maxEvents: 10 }));
  return { store, open, apps };
}

const meta = { appId: "app_ops" };
function keyFor(id: string, plaintext: string, extra: Partial<NewKey> = {}): NewKey {
  return { key_id: id, name: id, prefix: keyPrefix(plaintext), hash: keyHash(plaintext), mode: "live", scopes: ["data:read"], agent_ids: null, user_id: null, expires_at: null, ...extra };
}
async function started(store: SqliteEventStore) {
  const directory = new TenantDirectory(store);
  await directory.start();
  cleanups.push(() => directory.stop());
  return directory;
}

test("keys issued before start are folded; keys issued after are followed; unknown keys are unknown", async () => {
  const { store, apps } = setup();
  const early = newApiKey("live");
  await apps.handle("app_a", { type: "CreateApp", app_id: "app_a", name: "A" }, meta);
  await apps.handle("app_a", { type: "IssueKey", key: keyFor("k_early", early) }, meta);
  const directory = await started(store);
  expect(directory.lookup(keyHash(early))).toMatchObject({ ok: true, appId: "app_a", key: { key_id: "k_early" } });
  const late = newApiKey("test");
  const issued = await apps.handle("app_a", { type: "IssueKey", key: keyFor("k_late", late, { mode: "test" }) }, meta);
  await directory.waitFor(issued.position!);
  expect(directory.lookup(keyHash(late))).toMatchObject({ ok: true, key: { mode: "test" } });
  expect(directory.lookup(keyHash(newApiKey("live")))).toEqual({ ok: false, reason: "unknown" });
});

test("revoked, expired, rotated past their grace, suspended and deleted: each refused with its reason", async () => {
  const { store, apps } = setup();
  const directory = await started(store);
  const [revoked, expiring, rotated, replacement] = [newApiKey("live"), newApiKey("live"), newApiKey("live"), newApiKey("live")];
  await apps.handle("app_b", { type: "CreateApp", app_id: "app_b", name: "B" }, meta);
  await apps.handle("app_b", [
    { type: "IssueKey", key: keyFor("k_rev", revoked) },
    { type: "IssueKey", key: keyFor("k_exp", expiring, { expires_at: 1_000 }) },
    { type: "IssueKey", key: keyFor("k_rot", rotated) },
  ], meta);
  await apps.handle("app_b", { type: "RevokeKey", key_id: "k_rev" }, meta);
  const last = await apps.handle("app_b", { type: "RotateKey", key_id: "k_rot", replacement: keyFor("k_new", replacement), grace_until: 2_000, now: 0 }, meta);
  await directory.waitFor(last.position!);
  expect(directory.lookup(keyHash(revoked), 0)).toEqual({ ok: false, reason: "revoked" });
  expect(directory.lookup(keyHash(expiring), 999).ok).toBe(true);
  expect(directory.lookup(keyHash(expiring), 1_000)).toEqual({ ok: false, reason: "expired" });
  expect(directory.lookup(keyHash(rotated), 1_999).ok).toBe(true); // within its grace
  expect(directory.lookup(keyHash(rotated), 2_000)).toEqual({ ok: false, reason: "expired" });
  expect(directory.lookup(keyHash(replacement), 2_000).ok).toBe(true);
  const suspended = await apps.handle("app_b", { type: "SuspendApp", reason: null }, meta);
  await directory.waitFor(suspended.position!);
  expect(directory.lookup(keyHash(replacement), 0)).toEqual({ ok: false, reason: "app_suspended" });
  const deleted = await apps.handle("app_b", { type: "DeleteApp" }, meta);
  await directory.waitFor(deleted.position!);
  expect(directory.lookup(keyHash(replacement), 0)).toEqual({ ok: false, reason: "app_deleted" });
});

test("a key revoked through one process is refused by another process's directory", async () => {
  const { store, open, apps } = setup();
  const key = newApiKey("live");
  await apps.handle("app_c", { type: "CreateApp", app_id: "app_c", name: "C" }, meta);
  await apps.handle("app_c", { type: "IssueKey", key: keyFor("k1", key) }, meta);
  const elsewhere = await started(open());
  expect(elsewhere.lookup(keyHash(key)).ok).toBe(true);
  const revoked = await apps.handle("app_c", { type: "RevokeKey", key_id: "k1" }, meta);
  await Promise.race([elsewhere.waitFor(revoked.position!), Bun.sleep(5000)]);
  expect(elsewhere.lookup(keyHash(key))).toEqual({ ok: false, reason: "revoked" });
  void store;
});

test("key use is recorded at most once per key per granularity, however many requests", async () => {
  const { KeyUsage } = await import("../../src/app/keyUsage.ts");
  const { store, apps } = setup();
  const key = newApiKey("live");
  await apps.handle("app_u", { type: "CreateApp", app_id: "app_u", name: "U" }, meta);
  await apps.handle("app_u", { type: "IssueKey", key: keyFor("k_used", key) }, meta);
  const usage = new KeyUsage({ apps }, { granularityMs: 60_000, flushEveryMs: 60_000 });
  for (let i = 0; i < 50; i++) usage.touch("app_u", "k_used", 1_000_000 + i);
  await usage.flush();
  await usage.flush();
  usage.touch("app_u", "k_used", 1_000_000 + 30_000); // within the granularity: nothing more
  await usage.flush();
  usage.touch("app_u", "k_used", 1_000_000 + 70_000); // past it: one more
  await usage.flush();
  const used: number[] = [];
  for await (const e of store.readStream("app-app_u")) if (e.type === "ApiKeyUsed") used.push((e.data as { at: number }).at);
  expect(used).toEqual([1_000_049, 1_070_000]);
  const { state } = await apps.load("app_u");
  expect(state.keys[0]!.last_used_at).toBe(1_070_000);
});
