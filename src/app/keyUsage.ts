/**
 * When each API key was last used, without a write per request: uses are noted in memory and recorded
 * (an `ApiKeyUsed` event) at most once per key per `granularityMs`, by a periodic flush and at shutdown.
 * Lists show the later of the recorded use and this process's own note.
 */
import type { Logger } from "../core/logger.ts";
import type { Repositories } from "./context.ts";

export class KeyUsage {
  private readonly seen = new Map<string, { appId: string; at: number }>();
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly repos: Pick<Repositories, "apps">,
    private readonly options: { granularityMs: number; flushEveryMs: number; logger?: Logger },
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.options.flushEveryMs);
    this.timer.unref?.();
  }

  /** Notes a use (a map write: called on every authenticated request). */
  touch(appId: string, keyId: string, at = Date.now()): void {
    this.seen.set(keyId, { appId, at });
  }

  /** This process's last note of the key's use, if any. */
  noted(keyId: string): number | null {
    return this.seen.get(keyId)?.at ?? null;
  }

  /** Records the noted uses the store does not have yet (the decider skips those within the granularity). */
  async flush(): Promise<void> {
    const pending = [...this.seen];
    for (const [keyId, { appId, at }] of pending) {
      await this.repos.apps.handle(appId, { type: "RecordKeyUse", key_id: keyId, at, granularity_ms: this.options.granularityMs }, { appId, actor: "system:key-usage" })
        .catch((err) => this.options.logger?.warn("could not record an API key's use", { key_id: keyId, error: err as Error }));
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
