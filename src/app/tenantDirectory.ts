/**
 * The tenant directory: every app's status and every API key, in memory, so a request is
 * authenticated with one hash and one map lookup. It is an in-memory projection of the `app-` streams:
 * folded from the store at start, then kept current by a subscription to those streams, in every
 * process (a key issued or revoked through one API process is honoured by all).
 */
import type { Logger } from "../core/logger.ts";
import { appDecider, type ApiKeyRecord, type AppState } from "../domain/app/app.ts";
import { appEvents } from "../domain/app/events.ts";
import { idOf } from "../domain/streams.ts";
import type { EventStore, RecordedEvent, Subscription } from "../eventstore/port.ts";

const APP_STREAMS = { streamPrefixes: ["app-"] };

export type KeyLookup =
  | { ok: true; appId: string; key: ApiKeyRecord }
  | { ok: false; reason: "unknown" | "revoked" | "expired" | "app_suspended" | "app_deleted" };

export class TenantDirectory {
  private readonly apps = new Map<string, AppState>();
  private readonly byHash = new Map<string, { appId: string; keyId: string }>();
  private subscription: Subscription | undefined;
  private loop: Promise<void> | undefined;
  private position: bigint | null = null;
  private waiters: Array<{ position: bigint; resolve: () => void }> = [];
  private stopped = false;

  constructor(private readonly store: EventStore, private readonly logger?: Logger) {}

  /** Folds every app stream in the store, then follows them. */
  async start(): Promise<void> {
    for await (const e of this.store.readAll({ filter: APP_STREAMS })) this.apply(e);
    this.loop = this.follow();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.subscription?.unsubscribe();
    await this.loop;
  }

  /** The key with this SHA-256, if it may be used now, with its app; else why not. */
  lookup(hash: string, now = Date.now()): KeyLookup {
    const found = this.byHash.get(hash);
    return found ? this.byId(found.appId, found.keyId, now) : { ok: false, reason: "unknown" };
  }

  /** The key `keyId` of `appId`, if it may be used now (an end-user token lives only as long as its key). */
  byId(appId: string, keyId: string, now = Date.now()): KeyLookup {
    const app = this.apps.get(appId);
    const key = app?.keys.find((k) => k.key_id === keyId);
    if (!app || !key) return { ok: false, reason: "unknown" };
    if (app.status === "deleted") return { ok: false, reason: "app_deleted" };
    if (key.revoked) return { ok: false, reason: "revoked" };
    if (key.refused_after !== null && now >= key.refused_after) return { ok: false, reason: "expired" };
    if (app.status === "suspended") return { ok: false, reason: "app_suspended" };
    return { ok: true, appId, key };
  }

  app(appId: string): AppState | undefined {
    return this.apps.get(appId);
  }

  /** Every app the directory knows, deleted ones included, by id. */
  allApps(): ReadonlyMap<string, AppState> {
    return this.apps;
  }

  /**
   * Resolves once the directory has folded the event at `position` (an issued key works at once), or
   * after `timeoutMs` regardless: the write has committed, so a lagging feed delays, never fails, it.
   */
  waitFor(position: bigint, timeoutMs = 10_000): Promise<void> {
    if (this.position !== null && this.position >= position) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve();
      }, timeoutMs);
      const waiter = { position, resolve: () => (clearTimeout(timer), resolve()) };
      this.waiters.push(waiter);
    });
  }

  private async follow(): Promise<void> {
    while (!this.stopped) {
      this.subscription = this.store.subscribeToAll({ fromPosition: this.position ?? "start", filter: APP_STREAMS });
      try {
        for (;;) {
          const batch = await this.subscription.nextBatch(500);
          if (batch.length === 0) return; // unsubscribed
          for (const e of batch) this.apply(e);
        }
      } catch (err) {
        if (this.stopped) return;
        this.logger?.warn("tenant directory: the app feed failed; resubscribing", { error: err as Error });
        await Bun.sleep(500);
      }
    }
  }

  private apply(e: RecordedEvent): void {
    if (this.position !== null && e.position <= this.position) return; // the feed overlaps the fold
    this.position = e.position;
    const appId = idOf(e.streamId);
    const event = appEvents.decode(e);
    const next = appDecider.evolve(this.apps.get(appId) ?? appDecider.initialState, event);
    this.apps.set(appId, next);
    if (event.type === "ApiKeyIssued") this.byHash.set(event.data.hash, { appId, keyId: event.data.key_id });
    this.waiters = this.waiters.filter((w) => {
      if (w.position > e.position) return true;
      w.resolve();
      return false;
    });
  }
}
