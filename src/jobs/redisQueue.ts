/**
 * The Redis adapter of the JobQueue port: a Redis stream read by a consumer group, so each job id
 * goes to one worker at a time across processes.
 *
 * - A delivery is a lease: while the handler runs, a heartbeat re-claims the entry for this consumer
 *   (resetting its idle time), so a live worker keeps its job however long the turn takes.
 * - A worker that dies stops heartbeating; after `leaseMs` any other worker takes the entry over with
 *   XAUTOCLAIM and runs the job (the job's own stream decides what that means: resume, fail as
 *   interrupted, or nothing).
 * - An entry delivered more than `maxDeliveries` times is given up: acknowledged, and `onGiveUp` ends
 *   the job with a clear error, so a job that kills its workers cannot loop forever.
 * - Finished entries are acknowledged and deleted. Losing Redis loses nothing that matters: the event
 *   store knows every unfinished job and the reconciler queues them again.
 */
import Redis from "ioredis";
import { hostname } from "node:os";
import type { Logger } from "../core/logger.ts";
import type { ConsumeOptions, JobHandler, JobQueue } from "./queue.ts";

export interface RedisJobQueueOptions {
  url: string;
  stream?: string;
  group?: string;
  consumer?: string;
  leaseMs?: number;
  maxDeliveries?: number;
  enqueueTimeoutMs?: number;
  /** How long a read blocks waiting for new entries (bounds how fast close() returns). */
  blockMs?: number;
  logger?: Logger;
}

type Entry = [id: string, fields: string[]];

export class RedisJobQueue implements JobQueue {
  readonly kind = "redis";
  private readonly commands: Redis;
  private readonly reader: Redis;
  private readonly stream: string;
  private readonly group: string;
  readonly consumer: string;
  private readonly leaseMs: number;
  private readonly maxDeliveries: number;
  private readonly blockMs: number;
  private closed = false;
  private active = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private loop: Promise<void> | undefined;
  private slotFreed: (() => void) | undefined;

  constructor(private readonly options: RedisJobQueueOptions) {
    const connection = { maxRetriesPerRequest: null } as const;
    this.commands = new Redis(options.url, connection);
    this.reader = new Redis(options.url, connection); // blocking reads get their own connection
    for (const c of [this.commands, this.reader]) c.on("error", (err) => options.logger?.warn("redis connection error", { error: err }));
    this.stream = options.stream ?? "agentry:jobs";
    this.group = options.group ?? "workers";
    this.consumer = options.consumer ?? `${hostname()}-${process.pid}-${crypto.randomUUID().slice(0, 8)}`;
    this.leaseMs = options.leaseMs ?? 30_000;
    this.maxDeliveries = options.maxDeliveries ?? 5;
    this.blockMs = options.blockMs ?? 1000;
  }

  /**
   * Adds a job. Bounded: while Redis is away it fails after `enqueueTimeoutMs` rather than holding up
   * the request that created the job (which is already durable; the reconciler dispatches it again).
   */
  async enqueue(jobId: string): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("Redis did not accept the job in time")), this.options.enqueueTimeoutMs ?? 2000);
    });
    try {
      await Promise.race([this.commands.xadd(this.stream, "*", "job", jobId), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  consume(handler: JobHandler, concurrency: number, options: ConsumeOptions = {}): void {
    this.loop = this.run(handler, Math.max(1, concurrency), options);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.slotFreed?.();
    await this.loop?.catch(() => {});
    await Promise.allSettled([...this.inFlight]);
    this.reader.disconnect();
    await this.commands.quit().catch(() => this.commands.disconnect());
  }

  /** Entries delivered but not yet acknowledged, for operators and tests. */
  async pendingCount(): Promise<number> {
    const summary = (await this.commands.xpending(this.stream, this.group)) as [number, ...unknown[]];
    return Number(summary[0] ?? 0);
  }

  private async ensureGroup(): Promise<void> {
    try {
      // From the start of the stream: entries added before the first worker ever started still run.
      await this.commands.xgroup("CREATE", this.stream, this.group, "0", "MKSTREAM");
    } catch (err) {
      if (!String((err as Error).message).includes("BUSYGROUP")) throw err;
    }
  }

  private async run(handler: JobHandler, concurrency: number, options: ConsumeOptions): Promise<void> {
    while (!this.closed) {
      try {
        await this.ensureGroup();
        let reclaimFrom = "0-0";
        while (!this.closed) {
          if (this.active >= concurrency) {
            await new Promise<void>((resolve) => (this.slotFreed = resolve));
            continue;
          }
          const free = concurrency - this.active;
          // Take over entries whose worker stopped heartbeating, then read new ones.
          const [next, claimed] = (await this.commands.xautoclaim(this.stream, this.group, this.consumer, this.leaseMs, reclaimFrom, "COUNT", free)) as [string, Entry[]];
          reclaimFrom = next;
          for (const entry of claimed.filter((e) => e && e[1])) await this.start(entry, handler, options, true);
          if (claimed.length >= free) continue;
          const read = (await this.reader.xreadgroup("GROUP", this.group, this.consumer, "COUNT", free - claimed.length, "BLOCK", this.blockMs, "STREAMS", this.stream, ">")) as Array<[string, Entry[]]> | null;
          for (const entry of read?.[0]?.[1] ?? []) await this.start(entry, handler, options, false);
        }
      } catch (err) {
        if (this.closed) return;
        this.options.logger?.warn("job queue read failed; retrying", { error: err as Error });
        await Bun.sleep(500);
      }
    }
  }

  private async start(entry: Entry, handler: JobHandler, options: ConsumeOptions, reclaimed: boolean): Promise<void> {
    const [id, fields] = entry;
    const jobId = fields[fields.indexOf("job") + 1];
    if (!jobId) {
      await this.finish(id);
      return;
    }
    if (reclaimed) {
      const info = (await this.commands.xpending(this.stream, this.group, id, id, 1)) as Array<[string, string, number, number]>;
      const deliveries = Number(info[0]?.[3] ?? 1);
      if (deliveries > this.maxDeliveries) {
        this.options.logger?.warn("job delivered too often; giving up", { job_id: jobId, deliveries });
        await options.onGiveUp?.(jobId, deliveries).catch((err) => this.options.logger?.error("giving up a job failed", { job_id: jobId, error: err as Error }));
        await this.finish(id);
        return;
      }
    }
    this.active++;
    const heartbeat = setInterval(() => {
      void this.commands.xclaim(this.stream, this.group, this.consumer, 0, id, "JUSTID").catch(() => {});
    }, Math.max(50, Math.floor(this.leaseMs / 3)));
    const work = handler(jobId)
      .catch((err) => this.options.logger?.error("job handler failed", { job_id: jobId, error: err as Error }))
      .then(() => this.finish(id))
      .finally(() => {
        clearInterval(heartbeat);
        this.active--;
        this.inFlight.delete(work);
        this.slotFreed?.();
      });
    this.inFlight.add(work);
  }

  private async finish(id: string): Promise<void> {
    await this.commands.multi().xack(this.stream, this.group, id).xdel(this.stream, id).exec();
  }
}
