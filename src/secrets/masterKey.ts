/**
 * The secret box's master key: 32 random bytes that wrap every app's data keys and never enter the
 * event store, a log or an error message.
 *
 * - `SECRETS_MASTER_KEY` (base64 of 32 bytes) when set: the way to share one key between machines.
 * - Otherwise a key generated once into `DATA_DIR/secrets_master_key` (file 0600, folder 0700) and read
 *   from there on every later start, by every process sharing the data folder. Two processes starting
 *   at once end with the same file: it is written aside and linked into place, and the loser reads the
 *   winner's.
 * - Without a data folder (`EVENT_STORE=memory`), a key held in memory only, as the store is.
 *
 * `SECRETS_PREVIOUS_MASTER_KEYS` lists retired keys: data keys still wrapped by them can be unwrapped
 * (and re-wrapped by `rotateMasterKey`). A key's id is a short hash of it, recorded with each wrapping
 * so the box knows which key to use.
 */
import { createHash, createSecretKey, randomBytes, type KeyObject } from "node:crypto";
import { chmodSync, existsSync, fsyncSync, linkSync, openSync, closeSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { preparePrivateDir } from "../core/privateFiles.ts";
import { MasterKeyError } from "./errors.ts";

export const MASTER_KEY_FILE = "secrets_master_key";

export interface MasterKey {
  /** `mk_` and 16 hex digits of a hash of the key: safe to store and log. */
  readonly id: string;
  readonly key: KeyObject;
}

export interface MasterKeys {
  /** The key new data keys are wrapped with. */
  readonly current: MasterKey;
  /** Every key the box can unwrap with, current included, by id. */
  readonly byId: ReadonlyMap<string, MasterKey>;
  /** Where the current key came from. */
  readonly source: "env" | "file" | "generated" | "memory";
  /** The key file, when the key came from (or was generated into) one. */
  readonly path?: string;
}

const BASE64_32_BYTES = /^[A-Za-z0-9+/_-]{43}=?$/;

/** The 32 bytes a base64 (or base64url) master key encodes, or null if it is not one. Never echo the input. */
export function parseMasterKey(text: string): Buffer | null {
  const trimmed = text.trim();
  if (!BASE64_32_BYTES.test(trimmed)) return null;
  const raw = Buffer.from(trimmed, "base64");
  return raw.length === 32 ? raw : null;
}

/** A short, stable id for a master key, from a domain-separated hash of it. */
export function masterKeyId(raw: Buffer): string {
  return `mk_${createHash("sha256").update("agentry.secrets.master-key-id\0").update(raw).digest("hex").slice(0, 16)}`;
}

const toMasterKey = (raw: Buffer): MasterKey => ({ id: masterKeyId(raw), key: createSecretKey(raw) });

export interface MasterKeySources {
  /** `SECRETS_MASTER_KEY`, base64. */
  masterKey?: string | undefined;
  /** `SECRETS_PREVIOUS_MASTER_KEYS`, each base64. */
  previousMasterKeys?: readonly string[] | undefined;
  /** Where the generated key file lives; null for none (memory store). */
  dataDir: string | null;
}

export function resolveMasterKeys(sources: MasterKeySources): MasterKeys {
  let current: MasterKey;
  let source: MasterKeys["source"];
  let path: string | undefined;
  if (sources.masterKey) {
    const raw = parseMasterKey(sources.masterKey);
    if (!raw) throw new MasterKeyError("SECRETS_MASTER_KEY must be 32 random bytes in base64 (for example `openssl rand -base64 32`)");
    current = toMasterKey(raw);
    source = "env";
  } else if (sources.dataDir !== null) {
    path = join(sources.dataDir, MASTER_KEY_FILE);
    const loaded = readOrCreateKeyFile(path);
    current = toMasterKey(loaded.raw);
    source = loaded.created ? "generated" : "file";
  } else {
    current = toMasterKey(randomBytes(32));
    source = "memory";
  }
  const byId = new Map<string, MasterKey>([[current.id, current]]);
  (sources.previousMasterKeys ?? []).forEach((text, i) => {
    const raw = parseMasterKey(text);
    if (!raw) throw new MasterKeyError(`SECRETS_PREVIOUS_MASTER_KEYS entry ${i + 1} must be 32 random bytes in base64`);
    const key = toMasterKey(raw);
    if (!byId.has(key.id)) byId.set(key.id, key);
  });
  return { current, byId, source, ...(path ? { path } : {}) };
}

function readKeyFile(path: string): Buffer {
  const raw = parseMasterKey(readFileSync(path, "utf8"));
  if (!raw) throw new MasterKeyError(`${path} does not hold a master key (32 bytes in base64); restore it from a backup or set SECRETS_MASTER_KEY`);
  return raw;
}

function readOrCreateKeyFile(path: string): { raw: Buffer; created: boolean } {
  if (existsSync(path)) {
    chmodSync(path, 0o600);
    return { raw: readKeyFile(path), created: false };
  }
  preparePrivateDir(join(path, ".."));
  const raw = randomBytes(32);
  // Written whole (and synced) beside the final name, then linked into place: a reader never sees a
  // half-written key, and when two processes race, the link fails for one of them, which reads the other's.
  const aside = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  const fd = openSync(aside, "wx", 0o600);
  try {
    writeSync(fd, raw.toString("base64") + "\n");
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(aside, path);
    return { raw, created: true };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return { raw: readKeyFile(path), created: false };
    throw err;
  } finally {
    unlinkSync(aside);
  }
}
