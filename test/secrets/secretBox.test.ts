/**
 * The secret box over a real SQLite event store: sealing and opening, binding to the app, tamper
 * detection, one data key per app across processes, master-key rotation, the generated key file, and
 * that no plaintext or key reaches the store file.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig } from "../../src/config.ts";
import type { Logger } from "../../src/core/logger.ts";
import { domainEvents } from "../../src/domain/catalog.ts";
import { keyringStream } from "../../src/domain/streams.ts";
import { SqliteEventStore } from "../../src/eventstore/adapters/sqlite.ts";
import { WrongExpectedVersionError } from "../../src/eventstore/errors.ts";
import { collect, type EventStore, type RecordedEvent } from "../../src/eventstore/port.ts";
import { MASTER_KEY_FILE, masterKeyId } from "../../src/secrets/masterKey.ts";
import {
  createSecretBox, isSealed, MasterKeyError, SecretOpenError, secretView, type SecretBox,
} from "../../src/secrets/secretBox.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const tempDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), "agentry-secrets-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
};

/** One store connection: two of them over one file behave as two processes do. */
const openStore = (dir: string): SqliteEventStore => {
  const store = new SqliteEventStore({ path: join(dir, "events.sqlite") });
  cleanups.push(() => store.close());
  return store;
};

const newMasterKey = (): string => randomBytes(32).toString("base64");

const boxOf = (store: EventStore, masterKey: string | undefined, previous: string[] = [], dataDir = "/nonexistent", logger?: Logger): SecretBox =>
  createSecretBox({ store, config: { dataDir, eventStore: "sqlite", secrets: { masterKey, previousMasterKeys: previous } }, ...(logger ? { logger } : {}) });

const keyringOf = async (store: EventStore, appId: string): Promise<RecordedEvent[]> => collect(store.readStream(keyringStream(appId)));

/** A logger that keeps every line it is given, to check what was logged. */
const recordingLogger = (lines: string[]): Logger => {
  const log = (level: string) => (msg: string, fields?: Record<string, unknown>) =>
    lines.push(JSON.stringify({ level, msg, ...fields }, (_k, v) => (typeof v === "bigint" ? v.toString() : v)));
  const logger: Logger = { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error"), child: () => logger, showSecretOnce: () => {} };
  return logger;
};

/** Unwraps a data key the documented way (AES-256-GCM, `<iv>.<ciphertext+tag>`, bound to app and key id). */
const unwrapForTest = (masterKey: string, appId: string, keyId: string, wrapped: string): Buffer => {
  const [iv, body] = wrapped.split(".").map((p) => Buffer.from(p, "base64url")) as [Buffer, Buffer];
  const decipher = createDecipheriv("aes-256-gcm", Buffer.from(masterKey, "base64"), iv);
  decipher.setAAD(Buffer.from(JSON.stringify(["agentry.data-key.v1", appId, keyId])));
  decipher.setAuthTag(body.subarray(body.length - 16));
  return Buffer.concat([decipher.update(body.subarray(0, body.length - 16)), decipher.final()]);
};

const flipByte = (b64url: string, index: number): string => {
  const bytes = Buffer.from(b64url, "base64url");
  bytes[index] = bytes[index]! ^ 0x01;
  return bytes.toString("base64url");
};

describe("seal and open", () => {
  test("round trip: what is sealed opens to the same string, in the documented format, never containing it", async () => {
    const box = boxOf(openStore(tempDir()), newMasterKey());
    for (const plaintext of ["sk-live-0123456789abcdef", "", "é🔑 ünïcode", "x".repeat(100_000)]) {
      const sealed = await box.seal("app_a", plaintext);
      expect(sealed).toMatch(/^sb1:dk_[0-9a-f]{24}:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]+$/);
      expect(isSealed(sealed)).toBe(true);
      if (plaintext.length > 3) expect(sealed).not.toContain(plaintext);
      expect(await box.open("app_a", sealed)).toBe(plaintext);
    }
    // A fresh iv per value: the same secret sealed twice gives two different values.
    expect(await box.seal("app_a", "same")).not.toBe(await box.seal("app_a", "same"));
  });

  test("another app cannot open a value: not with its own keyring, not without one, not with the key moved into its keyring", async () => {
    const store = openStore(tempDir());
    const box = boxOf(store, newMasterKey());
    const sealed = await box.seal("app_a", "a's provider key");
    await expect(box.open("app_b", sealed)).rejects.toBeInstanceOf(SecretOpenError); // app_b has no keyring
    await box.seal("app_b", "b's own secret");
    await expect(box.open("app_b", sealed)).rejects.toBeInstanceOf(SecretOpenError); // app_b's keyring lacks a's key
    // Someone with write access to the store copies a's wrapped data key into c's keyring: it does not
    // unwrap there (the wrapping is bound to app and key id), so nothing sealed for a opens as c's.
    const [created] = await keyringOf(store, "app_a");
    const data = created!.data as { key_id: string; wrapped: string; master_key_id: string };
    await store.appendToStream(keyringStream("app_c"), [{ id: crypto.randomUUID(), type: "DataKeyCreated", data: { ...data, app_id: "app_c" } }]);
    const moved = await box.open("app_c", sealed).catch((e) => e);
    expect(moved).toBeInstanceOf(MasterKeyError);
    expect(String(moved.message)).toMatch(/does not unwrap/);
    expect(await box.open("app_a", sealed)).toBe("a's provider key");
  });

  test("a value stays bound to its app even if another app's keyring held the very same data key", async () => {
    const store = openStore(tempDir());
    const masterKey = newMasterKey();
    const box = boxOf(store, masterKey);
    const sealed = await box.seal("app_a", "a's provider key");
    // Someone holding the master key re-wraps a's data key properly for app d (an operator mix-up):
    // the value still does not open as d's, because it is sealed with a's app id as authenticated data.
    const [created] = await keyringOf(store, "app_a");
    const { key_id, wrapped } = created!.data as { key_id: string; wrapped: string };
    const dataKey = unwrapForTest(masterKey, "app_a", key_id, wrapped);
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", Buffer.from(masterKey, "base64"), iv);
    cipher.setAAD(Buffer.from(JSON.stringify(["agentry.data-key.v1", "app_d", key_id])));
    const rewrapped = `${iv.toString("base64url")}.${Buffer.concat([cipher.update(dataKey), cipher.final(), cipher.getAuthTag()]).toString("base64url")}`;
    await store.appendToStream(keyringStream("app_d"), [{
      id: crypto.randomUUID(), type: "DataKeyCreated",
      data: { app_id: "app_d", key_id, wrapped: rewrapped, master_key_id: masterKeyId(Buffer.from(masterKey, "base64")) },
    }]);
    expect(await boxOf(store, masterKey).seal("app_d", "d's")).toContain(key_id); // d's keyring does work with that key
    await expect(box.open("app_d", sealed)).rejects.toBeInstanceOf(SecretOpenError);
  });

  test("any change to a sealed value fails with SecretOpenError: ciphertext, tag, iv, key id, format, encoding", async () => {
    const box = boxOf(openStore(tempDir()), newMasterKey());
    const sealed = await box.seal("app_a", "a secret worth protecting");
    const [format, keyId, iv, body] = sealed.split(":") as [string, string, string, string];
    const otherKeyId = (await box.seal("app_b", "other")).split(":")[1]!;
    const bodyBytes = Buffer.from(body, "base64url").length;
    const tampered = {
      "ciphertext byte": [format, keyId, iv, flipByte(body, 0)],
      "tag byte": [format, keyId, iv, flipByte(body, bodyBytes - 1)],
      "iv byte": [format, keyId, flipByte(iv, 5), body],
      "key id: unknown": [format, `dk_${"0".repeat(24)}`, iv, body],
      "key id: another app's": [format, otherKeyId, iv, body],
      "format version": ["sb2", keyId, iv, body],
      "truncated ciphertext": [format, keyId, iv, body.slice(0, 10)],
      "non-canonical base64": [format, keyId, iv, body.slice(0, -1) + String.fromCharCode(body.charCodeAt(body.length - 1) ^ 1)],
      "extra part": [format, keyId, iv, body, "x"],
    };
    for (const [what, parts] of Object.entries(tampered)) {
      const altered = parts.join(":");
      expect(altered).not.toBe(sealed);
      const error = await box.open("app_a", altered).catch((e) => e);
      if (!(error instanceof SecretOpenError)) throw new Error(`${what}: expected SecretOpenError, got ${String(error)}`);
      expect(error.code).toBe("secret_unreadable");
    }
    await expect(box.open("app_a", "not sealed at all")).rejects.toBeInstanceOf(SecretOpenError);
    expect(await box.open("app_a", sealed)).toBe("a secret worth protecting"); // the original still opens
  });
});

describe("one data key per app across processes", () => {
  test("two boxes over two connections, both sealing an app's first secret at once, end with one key both use", async () => {
    const dir = tempDir();
    const masterKey = newMasterKey();
    // Both boxes read the (missing) keyring before either appends: the barrier holds each keyring
    // append until both have tried, so the race happens on every run.
    let waiting = 0;
    let release!: () => void;
    const bothArrived = new Promise<void>((r) => (release = r));
    let conflicts = 0;
    const racing = (store: SqliteEventStore): EventStore =>
      new Proxy(store, {
        get(target, prop, receiver) {
          if (prop !== "appendToStream") return Reflect.get(target, prop, receiver);
          return async (...args: Parameters<EventStore["appendToStream"]>) => {
            if (++waiting === 2) release();
            await bothArrived;
            try {
              return await target.appendToStream(...args);
            } catch (err) {
              if (err instanceof WrongExpectedVersionError) conflicts++;
              throw err;
            }
          };
        },
      });
    const storeA = openStore(dir);
    const storeB = openStore(dir);
    const boxA = boxOf(racing(storeA), masterKey);
    const boxB = boxOf(racing(storeB), masterKey);
    const [sealedA, sealedB] = await Promise.all([boxA.seal("app_x", "from A"), boxB.seal("app_x", "from B")]);

    expect(conflicts).toBe(1); // the race did happen: one of the two appends lost
    const ring = await keyringOf(storeA, "app_x");
    expect(ring.map((e) => e.type)).toEqual(["DataKeyCreated"]);
    const keyId = (ring[0]!.data as { key_id: string }).key_id;
    expect(sealedA.split(":")[1]).toBe(keyId);
    expect(sealedB.split(":")[1]).toBe(keyId);
    expect(await boxA.open("app_x", sealedB)).toBe("from B");
    expect(await boxB.open("app_x", sealedA)).toBe("from A");
    expect(await boxOf(openStore(dir), masterKey).open("app_x", sealedA)).toBe("from A");
  });

  test("many seals at once in one box create one data key", async () => {
    const store = openStore(tempDir());
    const box = boxOf(store, newMasterKey());
    const sealed = await Promise.all(Array.from({ length: 25 }, (_, i) => box.seal("app_busy", `s${i}`)));
    expect((await keyringOf(store, "app_busy")).map((e) => e.type)).toEqual(["DataKeyCreated"]);
    expect(new Set(sealed.map((s) => s.split(":")[1])).size).toBe(1);
  });

  test("two real processes sealing the first secrets of the same apps at once agree on every app's key", async () => {
    const dir = tempDir();
    const path = join(dir, "events.sqlite");
    const masterKey = newMasterKey();
    const apps = Array.from({ length: 12 }, (_, i) => `app_p${i}`);
    // The store file exists before the workers start, as it does once any server has run. (Two processes
    // creating a fresh file at the same moment can fail with SQLITE_BUSY: the adapter sets its busy
    // timeout only after switching the file to WAL.)
    await new SqliteEventStore({ path }).close();
    const startAt = String(Date.now() + 1500);
    const spawn = () => Bun.spawn(["bun", join(import.meta.dir, "../support/secretsWorker.ts"), path, startAt, ...apps], {
      stdout: "pipe", stderr: "pipe", env: { ...process.env, SECRETS_MASTER_KEY: masterKey },
    });
    const workers = [spawn(), spawn()];
    const outputs = await Promise.all(workers.map(async (w) => {
      const [out, err, code] = await Promise.all([new Response(w.stdout).text(), new Response(w.stderr).text(), w.exited]);
      if (code !== 0) throw new Error(`worker exited ${code}: ${err}`);
      return JSON.parse(out) as Record<string, string>;
    }));
    const store = openStore(dir);
    const box = boxOf(store, masterKey);
    for (const app of apps) {
      const ring = await keyringOf(store, app);
      expect(ring.map((e) => e.type)).toEqual(["DataKeyCreated"]);
      const keyId = (ring[0]!.data as { key_id: string }).key_id;
      for (const out of outputs) {
        expect(out[app]!.split(":")[1]).toBe(keyId);
        expect(await box.open(app, out[app]!)).toBe(`secret of ${app}`);
      }
    }
  });
});

describe("master key", () => {
  test("rotation: re-wraps every data key by appending; a box with only the new key opens values sealed before; nothing earlier changed", async () => {
    const dir = tempDir();
    const store = openStore(dir);
    const oldKey = newMasterKey();
    const newKey = newMasterKey();
    const before = boxOf(store, oldKey);
    const values: [string, string, string][] = [];
    for (const app of ["app_a", "app_b"]) {
      for (const plaintext of [`${app} one`, `${app} two`]) {
        const sealed = await before.seal(app, plaintext);
        values.push([app, plaintext, sealed]);
        // Where sealed values live: in events (as an agent's tool headers will).
        await store.appendToStream(`probe-${app}`, [{ id: crypto.randomUUID(), type: "ProbeSecretStored", data: { sealed } }]);
      }
    }
    const history = await collect(store.readAll());

    // Without the old key, rotation cannot unwrap anything: it says which keys and appends nothing.
    const lacking = await boxOf(store, newKey).rotateMasterKey();
    expect(lacking.rewrapped).toBe(0);
    expect(lacking.failed.map((f) => f.app_id).sort()).toEqual(["app_a", "app_b"]);
    expect(lacking.failed.every((f) => f.master_key_id === masterKeyId(Buffer.from(oldKey, "base64")))).toBe(true);
    expect((await collect(store.readAll())).length).toBe(history.length);

    const report = await boxOf(store, newKey, [oldKey]).rotateMasterKey();
    expect(report).toEqual({
      master_key_id: masterKeyId(Buffer.from(newKey, "base64")), apps: 2, data_keys: 2, rewrapped: 2, already_current: 0, failed: [],
    });

    const after = await collect(store.readAll());
    const strip = (e: RecordedEvent) => ({ id: e.id, stream: e.streamId, revision: e.revision, position: e.position, type: e.type, data: e.data, metadata: e.metadata });
    expect(after.slice(0, history.length).map(strip)).toEqual(history.map(strip)); // nothing earlier rewritten
    const added = after.slice(history.length);
    expect(added.map((e) => e.type)).toEqual(["DataKeyRewrapped", "DataKeyRewrapped"]);
    for (const e of added) expect((e.data as { master_key_id: string }).master_key_id).toBe(report.master_key_id);
    // The sealed values in the store are the ones sealed before rotation, byte for byte.
    const stored = after.filter((e) => e.type === "ProbeSecretStored").map((e) => (e.data as { sealed: string }).sealed);
    expect(stored).toEqual(values.map(([, , sealed]) => sealed));

    // A new process with only the new key opens everything sealed before rotation.
    const onlyNew = boxOf(openStore(dir), newKey);
    for (const [app, plaintext, sealed] of values) expect(await onlyNew.open(app, sealed)).toBe(plaintext);
    // One with only the old key no longer can: the newest wrapping is the new key's.
    await expect(boxOf(openStore(dir), oldKey).open("app_a", values[0]![2])).rejects.toBeInstanceOf(MasterKeyError);
    // Running it again changes nothing.
    const again = await boxOf(store, newKey, [oldKey]).rotateMasterKey();
    expect(again).toMatchObject({ rewrapped: 0, already_current: 2, failed: [] });
    expect((await collect(store.readAll())).length).toBe(after.length);
  });

  test("a box with the wrong master key fails clearly, names key ids only, and creates no second data key", async () => {
    const store = openStore(tempDir());
    const rightKey = newMasterKey();
    const wrongKey = newMasterKey();
    const sealed = await boxOf(store, rightKey).seal("app_a", "top secret value");
    const wrong = boxOf(store, wrongKey);
    const error = await wrong.open("app_a", sealed).catch((e) => e);
    expect(error).toBeInstanceOf(MasterKeyError);
    expect(error.code).toBe("master_key_unavailable");
    expect(error.message).toContain(masterKeyId(Buffer.from(rightKey, "base64")));
    expect(error.message).toContain("SECRETS_MASTER_KEY");
    for (const secret of [rightKey, wrongKey, Buffer.from(rightKey, "base64").toString("base64url"), "top secret value"]) {
      expect(error.message).not.toContain(secret);
    }
    await expect(wrong.seal("app_a", "another")).rejects.toBeInstanceOf(MasterKeyError);
    expect((await keyringOf(store, "app_a")).length).toBe(1);
  });

  test("generated into the data folder once (file 0600, folder 0700), never logged, and reused on the next start", async () => {
    const dataDir = join(tempDir(), "data");
    const lines: string[] = [];
    const storeDir = tempDir();
    const store = openStore(storeDir);
    const first = boxOf(store, undefined, [], dataDir, recordingLogger(lines));
    const path = join(dataDir, MASTER_KEY_FILE);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    const keyText = readFileSync(path, "utf8").trim();
    expect(Buffer.from(keyText, "base64").length).toBe(32);
    expect(first.masterKeyId).toBe(masterKeyId(Buffer.from(keyText, "base64")));
    const sealed = await first.seal("app_a", "kept across restarts");
    expect(lines.some((l) => l.includes("generated the secrets master key"))).toBe(true);
    expect(lines.join("\n")).not.toContain(keyText);
    expect(lines.join("\n")).not.toContain(Buffer.from(keyText, "base64").toString("base64url"));

    const secondLines: string[] = [];
    const second = boxOf(openStore(storeDir), undefined, [], dataDir, recordingLogger(secondLines));
    expect(second.masterKeyId).toBe(first.masterKeyId);
    expect(readFileSync(path, "utf8").trim()).toBe(keyText);
    expect(secondLines.some((l) => l.includes("generated"))).toBe(false);
    expect(await second.open("app_a", sealed)).toBe("kept across restarts");
    expect(readdirSync(dataDir)).toEqual([MASTER_KEY_FILE]); // nothing left beside it

    // A damaged key file stops the box with a message naming the file, not its contents.
    writeFileSync(path, "not a key\n");
    expect(() => boxOf(store, undefined, [], dataDir)).toThrow(MasterKeyError);
    expect(() => boxOf(store, undefined, [], dataDir)).toThrow(path);
  });

  test("SECRETS_MASTER_KEY wins over the key file, and bad values are refused without being echoed", () => {
    const key = newMasterKey();
    const config = loadConfig({ SECRETS_MASTER_KEY: key, SECRETS_PREVIOUS_MASTER_KEYS: `${newMasterKey()}, ${newMasterKey()}` });
    expect(config.secrets.masterKey).toBe(key);
    expect(config.secrets.previousMasterKeys.length).toBe(2);
    const dataDir = tempDir();
    const box = boxOf(openStore(dataDir), key, [], dataDir);
    expect(box.masterKeyId).toBe(masterKeyId(Buffer.from(key, "base64")));
    expect(existsSync(join(dataDir, MASTER_KEY_FILE))).toBe(false);

    const hexKey = randomBytes(32).toString("hex"); // a common mistake: hex, not base64
    for (const [env, variable, value] of [
      [{ SECRETS_MASTER_KEY: hexKey }, "SECRETS_MASTER_KEY", hexKey],
      [{ SECRETS_MASTER_KEY: "c2hvcnQta2V5" }, "SECRETS_MASTER_KEY", "c2hvcnQta2V5"],
      [{ SECRETS_MASTER_KEY: key, SECRETS_PREVIOUS_MASTER_KEYS: `${newMasterKey()},oops-${hexKey}` }, "SECRETS_PREVIOUS_MASTER_KEYS", hexKey],
    ] as const) {
      const error = (() => {
        try {
          loadConfig(env);
        } catch (e) {
          return e;
        }
      })() as ConfigError;
      expect(error).toBeInstanceOf(ConfigError);
      expect(error.variable).toBe(variable);
      expect(error.message).not.toContain(value);
    }
  });
});

describe("at rest", () => {
  test("neither the plaintext nor any key is in the store file; the sealed value is", async () => {
    const dir = tempDir();
    const store = openStore(dir);
    const masterKey = newMasterKey();
    const plaintext = `sk-canary-${randomBytes(12).toString("hex")}`;
    const box = boxOf(store, masterKey);
    const sealed = await box.seal("app_a", plaintext);
    await store.appendToStream("probe-1", [{ id: crypto.randomUUID(), type: "ProbeSecretStored", data: { sealed, view: secretView(plaintext) } }]);

    // The data key, unwrapped here the documented way, to look for it too.
    const [created] = await keyringOf(store, "app_a");
    const { key_id, wrapped } = created!.data as { key_id: string; wrapped: string };
    const dataKey = unwrapForTest(masterKey, "app_a", key_id, wrapped);
    expect(dataKey.length).toBe(32);
    await store.close();

    const files = ["events.sqlite", "events.sqlite-wal"].map((f) => join(dir, f)).filter(existsSync);
    const bytes = Buffer.concat(files.map((f) => readFileSync(f)));
    expect(bytes.includes(Buffer.from(sealed))).toBe(true); // the search finds what is there
    for (const needle of [
      Buffer.from(plaintext), Buffer.from(plaintext, "utf16le"), Buffer.from(Buffer.from(plaintext.slice(0, 30)).toString("base64url")),
      Buffer.from(masterKey, "base64"), Buffer.from(masterKey), Buffer.from(Buffer.from(masterKey, "base64").toString("base64url")),
      dataKey, Buffer.from(dataKey.toString("base64")), Buffer.from(dataKey.toString("base64url")), Buffer.from(dataKey.toString("hex")),
    ]) {
      expect(bytes.includes(needle)).toBe(false);
    }
  });

  test("keyring events decode through the domain catalog, as projections and auditors read them", async () => {
    const store = openStore(tempDir());
    const oldKey = newMasterKey();
    await boxOf(store, oldKey).seal("app_a", "x");
    await boxOf(store, newMasterKey(), [oldKey]).rotateMasterKey();
    const events = await keyringOf(store, "app_a");
    expect(events.map((e) => domainEvents.decode(e).type)).toEqual(["DataKeyCreated", "DataKeyRewrapped"]);
    for (const e of events) expect(e.metadata).toMatchObject({ app_id: "app_a", schema_version: 1 });
  });

  test("what an API may show: has_secret, and the last 4 characters only of long enough secrets", () => {
    expect(secretView("sk-live-abcdefgh1234")).toEqual({ has_secret: true, last4: "1234" });
    expect(secretView("short")).toEqual({ has_secret: true, last4: null });
    expect(secretView("")).toEqual({ has_secret: false, last4: null });
    expect(secretView(null)).toEqual({ has_secret: false, last4: null });
    expect(secretView("0123456789-🔑🔑🔑🔑")).toEqual({ has_secret: true, last4: "🔑🔑🔑🔑" });
  });
});

describe("bun run secrets rotate", () => {
  test("re-wraps the data folder's keys, prints ids and counts only, and fails while a needed old key is missing", async () => {
    const dataDir = tempDir();
    const oldKey = newMasterKey();
    const newKey = newMasterKey();
    const store = openStore(dataDir);
    const sealed = await boxOf(store, oldKey).seal("app_a", "rotated by the cli");
    await store.close();
    const run = async (env: Record<string, string>) => {
      const child = Bun.spawn(["bun", join(import.meta.dir, "../../src/cli/secrets.ts"), "rotate"], {
        stdout: "pipe", stderr: "pipe", env: { ...process.env, DATA_DIR: dataDir, EVENT_STORE: "sqlite", LOG_LEVEL: "error", ...env },
      });
      const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
      for (const key of [oldKey, newKey]) expect(stdout + stderr).not.toContain(key);
      return { stdout, stderr, code };
    };
    const missing = await run({ SECRETS_MASTER_KEY: newKey });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("SECRETS_PREVIOUS_MASTER_KEYS");

    const done = await run({ SECRETS_MASTER_KEY: newKey, SECRETS_PREVIOUS_MASTER_KEYS: oldKey });
    expect(done.code).toBe(0);
    expect(JSON.parse(done.stdout)).toMatchObject({ apps: 1, rewrapped: 1, failed: [] });
    expect(await boxOf(openStore(dataDir), newKey).open("app_a", sealed)).toBe("rotated by the cli");

    const again = await run({ SECRETS_MASTER_KEY: newKey });
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ rewrapped: 0, already_current: 1 });
  });
});
