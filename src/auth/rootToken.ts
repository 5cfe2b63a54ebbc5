/**
 * The operator's root token for the management plane. It is kept only as a SHA-256 hash, in the event
 * store's `operator-root` stream (src/domain/operator/events.ts), so every process and machine sharing
 * the store agrees on it:
 *
 * - `ADMIN_TOKEN` set: its hash is recorded unless it already is the current one; a different token
 *   recorded before (generated, or an earlier `ADMIN_TOKEN`) is replaced and stops working.
 * - `ADMIN_TOKEN` unset: the token recorded before stays in force; on the store's first start one is
 *   generated (`agr_` + 32 base64url characters) and handed back once, for the caller to print.
 * - Two processes starting at once append with the revision they read: one wins, the other reads again
 *   and keeps the winner's token (or, holding an `ADMIN_TOKEN` that differs, records its own after it).
 *
 * The current hash is held in memory and kept current by a subscription to the stream, so a token
 * replaced through another process stops working in this one within the store's poll interval.
 * Nothing here logs or throws a token.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { OCCURRED_AT_KEY } from "../core/eventContract.ts";
import { newEventId } from "../core/ids.ts";
import { silentLogger, type Logger } from "../core/logger.ts";
import { keyHash } from "../domain/app/keys.ts";
import { operatorEvents, type OperatorEvent } from "../domain/operator/events.ts";
import { rootTokenStream } from "../domain/streams.ts";
import { StreamNotFoundError, WrongExpectedVersionError } from "../eventstore/errors.ts";
import type { EventStore, RecordedEvent, Subscription } from "../eventstore/port.ts";

/** Appends lost to another starting process before giving up (each loss means the other one wrote). */
const MAX_ATTEMPTS = 8;

/** A new root token: `agr_` and 32 base64url characters (192 random bits). */
export const newRootToken = (): string => `agr_${randomBytes(24).toString("base64url")}`;

/** What may be shown of a root token: `agr_` and 4 characters for a generated one, else its first 4. */
export function rootTokenPrefix(token: string): string {
  return /^agr_/.test(token) ? token.slice(0, 8) : token.slice(0, 4);
}

interface Recorded {
  hash: string;
  revision: bigint;
}

export interface RootTokenStart {
  root: RootToken;
  /** The token generated on this start (the store had none and `ADMIN_TOKEN` is unset); null otherwise. */
  generated: string | null;
}

/** The root token in force: checked against a presented token's hash, in constant time. */
export class RootToken {
  private hash: Buffer;
  private revision: bigint;
  private subscription: Subscription | undefined;
  private loop: Promise<void> | undefined;
  private stopped = false;

  private constructor(
    private readonly store: EventStore,
    recorded: Recorded,
    private readonly logger: Logger,
  ) {
    this.hash = Buffer.from(recorded.hash, "hex");
    this.revision = recorded.revision;
  }

  /**
   * Makes sure the store holds a root token (see the module comment), then follows the stream.
   * `adminToken` is `ADMIN_TOKEN`.
   */
  static async start(store: EventStore, adminToken: string | undefined, logger: Logger = silentLogger): Promise<RootTokenStart> {
    const log = logger.child({ component: "root_token" });
    let generated: string | null = null;
    let recorded: Recorded | null = null;
    for (let attempt = 1; ; attempt++) {
      const current = await readCurrent(store);
      const wanted = adminToken !== undefined ? keyHash(adminToken) : null;
      if (current && (wanted === null || current.hash === wanted)) {
        recorded = current;
        break;
      }
      const token = adminToken ?? newRootToken();
      const event: OperatorEvent = {
        type: "RootTokenSet",
        data: { hash: keyHash(token), prefix: rootTokenPrefix(token), source: adminToken !== undefined ? "env" : "generated" },
      };
      try {
        const { nextExpectedRevision } = await store.appendToStream(
          rootTokenStream(),
          [{ id: newEventId(), type: event.type, data: event.data, metadata: { actor: event.data.source === "env" ? "operator:ADMIN_TOKEN" : "system:first-start", [OCCURRED_AT_KEY]: Date.now(), ...operatorEvents.encode(event) } }],
          { expectedRevision: current ? current.revision : "no_stream" },
        );
        recorded = { hash: event.data.hash, revision: nextExpectedRevision };
        if (adminToken === undefined) generated = token;
        log.info(current ? "the root token was replaced by ADMIN_TOKEN" : adminToken !== undefined ? "the root token is ADMIN_TOKEN" : "generated the root token", { revision: nextExpectedRevision });
        break;
      } catch (err) {
        // Another process recorded a token meanwhile: read again and decide on what it wrote.
        if (err instanceof WrongExpectedVersionError && attempt < MAX_ATTEMPTS) continue;
        throw err;
      }
    }
    const root = new RootToken(store, recorded, log);
    root.loop = root.follow();
    return { root, generated };
  }

  /** True when `hash` (SHA-256 hex of a presented token) is the current root token's. */
  matches(hash: string): boolean {
    if (hash.length !== 64) return false;
    const presented = Buffer.from(hash, "hex");
    return presented.length === this.hash.length && timingSafeEqual(presented, this.hash);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.subscription?.unsubscribe();
    await this.loop;
  }

  private async follow(): Promise<void> {
    while (!this.stopped) {
      this.subscription = this.store.subscribeToStream(rootTokenStream(), { fromRevision: this.revision });
      try {
        for (;;) {
          const batch = await this.subscription.nextBatch(100);
          if (batch.length === 0) return; // unsubscribed
          for (const e of batch) this.apply(e);
        }
      } catch (err) {
        if (this.stopped) return;
        this.logger.warn("root token: the operator stream feed failed; resubscribing", { error: err as Error });
        await Bun.sleep(500);
      }
    }
  }

  private apply(e: RecordedEvent): void {
    if (e.revision <= this.revision) return;
    const event = operatorEvents.decode(e);
    this.revision = e.revision;
    const next = Buffer.from(event.data.hash, "hex");
    if (!next.equals(this.hash)) this.logger.info("the root token was replaced by another process; the previous one no longer works", { revision: e.revision });
    this.hash = next;
  }
}

/** The newest recorded root token, or null when the store has none. */
async function readCurrent(store: EventStore): Promise<Recorded | null> {
  try {
    for await (const e of store.readStream(rootTokenStream(), { direction: "backwards", fromRevision: "end", maxCount: 1 })) {
      const event = operatorEvents.decode(e);
      return { hash: event.data.hash, revision: e.revision };
    }
  } catch (err) {
    if (err instanceof StreamNotFoundError) return null;
    throw err;
  }
  return null;
}
