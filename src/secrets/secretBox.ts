/**
 * The secret box: the one place secrets that must live in an event or a read model (provider keys,
 * HTTP-tool headers, end-user credentials) are sealed and opened.
 *
 * - AES-256-GCM with a random 96-bit iv per value. Each app has its own data key (32 random bytes),
 *   created on the app's first seal. A sealed value reads `sb1:<keyId>:<iv>:<ciphertext+tag>` (parts
 *   base64url) and is bound to its app and data key as additional authenticated data: it opens under
 *   no other app, and any change to it fails with `SecretOpenError`.
 * - Data keys are stored only wrapped (AES-256-GCM again, bound to app and key id) by the master key
 *   (src/secrets/masterKey.ts), in the event store's `keyring-<appId>` stream
 *   (src/domain/keyring/events.ts), so every process and machine sharing the store uses the same ones.
 *   Two processes creating an app's first key at once both append with expected revision `no_stream`:
 *   one wins, the other reads the winner's key and uses it. Unwrapped keys are cached in memory.
 * - Master-key rotation (`rotateMasterKey`) appends a `DataKeyRewrapped` per data key not yet wrapped
 *   by the current master key. No sealed value and no earlier event is rewritten.
 *
 * Nothing here logs or throws a secret, a key or a sealed value.
 */
import { createCipheriv, createDecipheriv, createSecretKey, randomBytes, type KeyObject } from "node:crypto";
import type { Config } from "../config.ts";
import { OCCURRED_AT_KEY } from "../core/eventContract.ts";
import { newEventId } from "../core/ids.ts";
import { silentLogger, type Logger } from "../core/logger.ts";
import { keyringEvents, type KeyringEvent } from "../domain/keyring/events.ts";
import { keyringStream } from "../domain/streams.ts";
import { StreamNotFoundError, WrongExpectedVersionError } from "../eventstore/errors.ts";
import type { EventStore } from "../eventstore/port.ts";
import { MasterKeyError, SecretBoxError, SecretOpenError } from "./errors.ts";
import { resolveMasterKeys, type MasterKey, type MasterKeys } from "./masterKey.ts";

export { MasterKeyError, SecretBoxError, SecretOpenError } from "./errors.ts";

const FORMAT = "sb1";
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_ID = /^dk_[0-9a-f]{24}$/;
const B64URL = /^[A-Za-z0-9_-]+$/;
/** Appends lost to another writer before giving up (each loss means the other writer made progress). */
const MAX_ATTEMPTS = 8;

export interface SecretBox {
  /** Seals `plaintext` for `appId`, creating the app's data key on its first seal. */
  seal(appId: string, plaintext: string): Promise<string>;
  /** Opens a value sealed for `appId`; throws SecretOpenError if it was altered or sealed for another app. */
  open(appId: string, sealed: string): Promise<string>;
  /**
   * Re-wraps every app's data keys that are not yet wrapped by the current master key, by appending
   * `DataKeyRewrapped` events. Safe to run again (and concurrently with the server): what is current is
   * left alone. Keys wrapped by a master key the box lacks are reported in `failed`, not skipped silently.
   */
  rotateMasterKey(): Promise<RotationReport>;
  /** Id of the master key new data keys are wrapped with. */
  readonly masterKeyId: string;
}

export interface RotationReport {
  master_key_id: string;
  apps: number;
  data_keys: number;
  rewrapped: number;
  already_current: number;
  failed: { app_id: string; key_id: string; master_key_id: string }[];
}

/** What an API may show of a secret: whether there is one and, for long enough ones, its last 4 characters. */
export interface SecretView {
  has_secret: boolean;
  last4: string | null;
}

/** Secrets shorter than this show no last 4 characters: too much of a short secret would be given away. */
export const LAST4_MIN_LENGTH = 12;

/** The public view of a secret, computed from the plaintext when it is set (store it beside the sealed value). */
export function secretView(plaintext: string | null | undefined): SecretView {
  if (plaintext === null || plaintext === undefined || plaintext === "") return { has_secret: false, last4: null };
  const chars = Array.from(plaintext);
  return { has_secret: true, last4: chars.length >= LAST4_MIN_LENGTH ? chars.slice(-4).join("") : null };
}

/** True for a string in the sealed format (it says nothing about whether it opens). */
export const isSealed = (value: string): boolean => value.startsWith(`${FORMAT}:`) && value.split(":").length === 4;

export interface CreateSecretBoxOptions {
  store: EventStore;
  /** `DATA_DIR` is where a generated master key lives (none with `EVENT_STORE=memory`). */
  config: Pick<Config, "dataDir" | "eventStore" | "secrets">;
  logger?: Logger;
}

/** The secret box for this configuration: its master key from `SECRETS_MASTER_KEY` or the data folder's key file. */
export function createSecretBox({ store, config, logger = silentLogger }: CreateSecretBoxOptions): SecretBox {
  const masterKeys = resolveMasterKeys({
    masterKey: config.secrets.masterKey,
    previousMasterKeys: config.secrets.previousMasterKeys,
    dataDir: config.eventStore === "memory" ? null : config.dataDir,
  });
  const log = logger.child({ component: "secret_box" });
  if (masterKeys.source === "generated") log.info("generated the secrets master key", { path: masterKeys.path, master_key_id: masterKeys.current.id });
  if (config.eventStore === "esdb" && masterKeys.source !== "env") {
    log.warn("SECRETS_MASTER_KEY is not set: the master key is this machine's key file, which other machines sharing the store lack; set SECRETS_MASTER_KEY to one key on every machine", { master_key_id: masterKeys.current.id });
  }
  return new EventSourcedSecretBox(store, masterKeys, log);
}

interface Wrapping {
  wrapped: string;
  master_key_id: string;
}

/** An app's keyring as read from its stream. */
interface Keyring {
  appId: string;
  /** Last revision read; -1n for no stream. */
  revision: bigint;
  /** The data key new values are sealed with: the newest created. */
  active: string | null;
  /** Each data key's newest wrapping. */
  wrappings: Map<string, Wrapping>;
  /** Data keys unwrapped so far. */
  unwrapped: Map<string, KeyObject>;
}

const valueAad = (appId: string, keyId: string) => Buffer.from(JSON.stringify(["agentry.secret.v1", appId, keyId]));
const wrapAad = (appId: string, keyId: string) => Buffer.from(JSON.stringify(["agentry.data-key.v1", appId, keyId]));

function encrypt(key: KeyObject, plaintext: Buffer, aad: Buffer): { iv: Buffer; sealed: Buffer } {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const sealed = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  return { iv, sealed };
}

/** Null when the data does not authenticate under this key and aad. */
function decrypt(key: KeyObject, iv: Buffer, sealed: Buffer, aad: Buffer): Buffer | null {
  if (iv.length !== IV_BYTES || sealed.length < TAG_BYTES) return null;
  const decipher = createDecipheriv("aes-256-gcm", key, iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)), decipher.final()]);
  } catch {
    return null;
  }
}

/** Strict base64url: only the canonical encoding of some bytes, so no two strings open as the same value. */
function fromB64url(part: string): Buffer | null {
  if (!B64URL.test(part)) return null;
  const bytes = Buffer.from(part, "base64url");
  return bytes.toString("base64url") === part ? bytes : null;
}

export class EventSourcedSecretBox implements SecretBox {
  private readonly rings = new Map<string, Keyring>();
  /** One keyring load or creation per app at a time in this process. */
  private readonly pending = new Map<string, Promise<Keyring | null>>();

  constructor(
    private readonly store: EventStore,
    private readonly masterKeys: MasterKeys,
    private readonly logger: Logger = silentLogger,
  ) {}

  get masterKeyId(): string {
    return this.masterKeys.current.id;
  }

  async seal(appId: string, plaintext: string): Promise<string> {
    checkAppId(appId);
    if (typeof plaintext !== "string") throw new TypeError("seal takes a string");
    const ring = await this.ringForSealing(appId);
    const keyId = ring.active!;
    const key = this.dataKey(ring, keyId);
    const { iv, sealed } = encrypt(key, Buffer.from(plaintext, "utf8"), valueAad(appId, keyId));
    return `${FORMAT}:${keyId}:${iv.toString("base64url")}:${sealed.toString("base64url")}`;
  }

  async open(appId: string, sealed: string): Promise<string> {
    checkAppId(appId);
    const parts = typeof sealed === "string" ? sealed.split(":") : [];
    const [format, keyId, ivText, bodyText] = parts;
    if (parts.length !== 4 || format !== FORMAT || !KEY_ID.test(keyId!)) throw new SecretOpenError("Not a sealed secret (expected sb1:<keyId>:<iv>:<ciphertext>)");
    const iv = fromB64url(ivText!);
    const body = fromB64url(bodyText!);
    if (!iv || !body || iv.length !== IV_BYTES || body.length < TAG_BYTES) throw new SecretOpenError("Not a sealed secret: malformed iv or ciphertext");
    let ring = this.rings.get(appId) ?? null;
    // Not cached, or a key this process has not seen: another process may have added it since.
    if (!ring?.wrappings.has(keyId!)) ring = await this.reloadRing(appId);
    if (!ring?.wrappings.has(keyId!)) {
      throw new SecretOpenError(`App ${appId} has no data key ${keyId}: the secret was sealed for another app, or altered`);
    }
    const plaintext = decrypt(this.dataKey(ring, keyId!), iv, body, valueAad(appId, keyId!));
    if (!plaintext) throw new SecretOpenError(`The secret does not open under app ${appId}'s data key ${keyId}: it was altered, or sealed for another app`);
    return plaintext.toString("utf8");
  }

  async rotateMasterKey(): Promise<RotationReport> {
    const current = this.masterKeys.current;
    const report: RotationReport = { master_key_id: current.id, apps: 0, data_keys: 0, rewrapped: 0, already_current: 0, failed: [] };
    const apps = new Set<string>();
    for await (const e of this.store.readAll({ filter: { streamPrefixes: ["keyring-"], eventTypes: ["DataKeyCreated"] } })) {
      apps.add(keyringEvents.decode(e).data.app_id);
    }
    for (const appId of apps) {
      report.apps++;
      for (let attempt = 1; ; attempt++) {
        const ring = await this.readRing(appId);
        if (!ring) break; // deleted meanwhile: nothing to re-wrap
        const events: KeyringEvent[] = [];
        const failed: RotationReport["failed"] = [];
        let current_ = 0;
        for (const [keyId, wrapping] of ring.wrappings) {
          if (wrapping.master_key_id === current.id) {
            current_++;
            continue;
          }
          let key: KeyObject;
          try {
            key = this.dataKey(ring, keyId);
          } catch (err) {
            if (!(err instanceof MasterKeyError)) throw err;
            failed.push({ app_id: appId, key_id: keyId, master_key_id: wrapping.master_key_id });
            continue;
          }
          events.push({ type: "DataKeyRewrapped", data: { app_id: appId, key_id: keyId, ...wrap(current, appId, keyId, key) } });
        }
        if (events.length > 0) {
          try {
            await this.append(appId, events, ring.revision);
          } catch (err) {
            if (err instanceof WrongExpectedVersionError && attempt < MAX_ATTEMPTS) continue;
            throw err;
          }
        }
        report.data_keys += ring.wrappings.size;
        report.rewrapped += events.length;
        report.already_current += current_;
        report.failed.push(...failed);
        this.rings.delete(appId);
        break;
      }
    }
    this.logger.info("master key rotation", { ...report, failed: report.failed.length });
    return report;
  }

  /** The data key `keyId` of a keyring, unwrapped (and cached) on first use. */
  private dataKey(ring: Keyring, keyId: string): KeyObject {
    const cached = ring.unwrapped.get(keyId);
    if (cached) return cached;
    const wrapping = ring.wrappings.get(keyId)!;
    const master = this.masterKeys.byId.get(wrapping.master_key_id);
    if (!master) {
      throw new MasterKeyError(
        `App ${ring.appId}'s data key ${keyId} is wrapped by master key ${wrapping.master_key_id}, which this server does not have ` +
          `(its master key is ${this.masterKeys.current.id}; known: ${[...this.masterKeys.byId.keys()].join(", ")}). ` +
          "Set SECRETS_MASTER_KEY to that key, or list it in SECRETS_PREVIOUS_MASTER_KEYS",
      );
    }
    const [ivText, bodyText] = wrapping.wrapped.split(".");
    const iv = fromB64url(ivText ?? "");
    const body = fromB64url(bodyText ?? "");
    const raw = iv && body ? decrypt(master.key, iv, body, wrapAad(ring.appId, keyId)) : null;
    if (!raw || raw.length !== 32) {
      throw new MasterKeyError(`App ${ring.appId}'s data key ${keyId} does not unwrap under master key ${master.id}: its keyring event was altered`);
    }
    const key = createSecretKey(raw);
    raw.fill(0);
    ring.unwrapped.set(keyId, key);
    return key;
  }

  /** The app's keyring read again from the store (and cached), or null when the app has none yet. */
  private reloadRing(appId: string): Promise<Keyring | null> {
    return this.singleFlight(appId, async () => {
      const ring = await this.readRing(appId);
      if (ring) this.remember(ring);
      return ring;
    });
  }

  /** The app's keyring with an active data key, creating the app's first key if it has none. */
  private async ringForSealing(appId: string): Promise<Keyring> {
    const cached = this.rings.get(appId);
    if (cached?.active) return cached;
    const ring = await this.singleFlight(appId, async () => {
      for (let attempt = 1; ; attempt++) {
        const found = this.rings.get(appId) ?? (await this.readRing(appId));
        if (found?.active) {
          this.remember(found);
          return found;
        }
        const keyId = `dk_${randomBytes(12).toString("hex")}`;
        const raw = randomBytes(32);
        const key = createSecretKey(raw);
        raw.fill(0);
        const wrapping = wrap(this.masterKeys.current, appId, keyId, key);
        try {
          const { nextExpectedRevision } = await this.append(appId, [{ type: "DataKeyCreated", data: { app_id: appId, key_id: keyId, ...wrapping } }], found?.revision ?? "no_stream");
          const ring: Keyring = found ?? { appId, revision: -1n, active: null, wrappings: new Map(), unwrapped: new Map() };
          ring.revision = nextExpectedRevision;
          ring.active = keyId;
          ring.wrappings.set(keyId, wrapping);
          ring.unwrapped.set(keyId, key);
          this.remember(ring);
          this.logger.info("created a data key", { app_id: appId, key_id: keyId, master_key_id: wrapping.master_key_id });
          return ring;
        } catch (err) {
          // Another process created the app's key first: use theirs.
          if (err instanceof WrongExpectedVersionError && attempt < MAX_ATTEMPTS) {
            this.rings.delete(appId);
            continue;
          }
          throw err;
        }
      }
    });
    return ring!;
  }

  private remember(ring: Keyring): void {
    const previous = this.rings.get(ring.appId);
    // Unwrapped keys stay valid across re-reads: a rewrap changes how a key is stored, never the key.
    if (previous) for (const [id, key] of previous.unwrapped) if (ring.wrappings.has(id) && !ring.unwrapped.has(id)) ring.unwrapped.set(id, key);
    this.rings.set(ring.appId, ring);
  }

  private async singleFlight(appId: string, run: () => Promise<Keyring | null>): Promise<Keyring | null> {
    const previous = this.pending.get(appId);
    const next = (previous ?? Promise.resolve(null)).catch(() => null).then(run);
    this.pending.set(appId, next);
    try {
      return await next;
    } finally {
      if (this.pending.get(appId) === next) this.pending.delete(appId);
    }
  }

  /** Reads the app's keyring from the store; null when it has no stream. */
  private async readRing(appId: string): Promise<Keyring | null> {
    const ring: Keyring = { appId, revision: -1n, active: null, wrappings: new Map(), unwrapped: new Map() };
    try {
      for await (const recorded of this.store.readStream(keyringStream(appId))) {
        const event = keyringEvents.decode(recorded);
        if (event.data.app_id !== appId) throw new SecretBoxError("keyring_corrupt", `Keyring of app ${appId} holds a key of app ${event.data.app_id}`);
        ring.revision = recorded.revision;
        ring.wrappings.set(event.data.key_id, { wrapped: event.data.wrapped, master_key_id: event.data.master_key_id });
        if (event.type === "DataKeyCreated") ring.active = event.data.key_id;
      }
    } catch (err) {
      if (err instanceof StreamNotFoundError) return null;
      throw err;
    }
    return ring;
  }

  private append(appId: string, events: KeyringEvent[], expectedRevision: bigint | "no_stream") {
    const now = Date.now();
    return this.store.appendToStream(
      keyringStream(appId),
      events.map((e) => ({ id: newEventId(), type: e.type, data: e.data, metadata: { app_id: appId, actor: "system:secret-box", [OCCURRED_AT_KEY]: now, ...keyringEvents.encode(e) } })),
      { expectedRevision },
    );
  }
}

function wrap(master: MasterKey, appId: string, keyId: string, key: KeyObject): Wrapping {
  const { iv, sealed } = encrypt(master.key, key.export(), wrapAad(appId, keyId));
  return { wrapped: `${iv.toString("base64url")}.${sealed.toString("base64url")}`, master_key_id: master.id };
}

function checkAppId(appId: string): void {
  if (typeof appId !== "string" || appId.length === 0) throw new TypeError("An app id is required");
}
