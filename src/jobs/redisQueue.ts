/**
 * The Redis adapter of the JobQueue port: a Redis stream read by a consumer group, so each job id
 * goes to one worker at a time across processes.
 *
 * - A delivery is a lease on the job: a key `<stream>:lease:<job id>` holding `<consumer>|<entry id>`,
 *   set when the handler starts and expiring after `leaseMs`. While the handler runs, a heartbeat
 *   re-claims the entry (resetting its idle time) and renews the key in one script, so a live worker
 *   keeps its job however long the turn takes, and anyone can ask whether a job is held (`isHeld`).
 * - A worker that dies stops heartbeating; after `leaseMs` any other worker takes the entry over with
 *   XAUTOCLAIM, takes over the lease that entry held, and runs the job (the job's own stream decides
 *   what that means: resume, fail as interrupted, or nothing).
 * - A second entry for a job another live entry holds (a dispatch repeated by the reconciler, an
 *   approval racing a redelivery, a session's next-turn dispatch) is acknowledged without running: only
 *   the holder runs the job. The holder's own entry stays pending until it finishes, so if the holder
 *   dies, that entry is taken over as above.
 * - Such an entry is not lost, though: the holder may already have decided what to do (the job now
 *   awaits approval, or it is not yet its session's turn) and be returning. So the failed acquire sets a
 *   flag `<stream>:redispatch:<job id>`, and the release that ends the holder's run (the same script,
 *   atomically) clears it and adds a new entry for the job. Both are Redis scripts, so each dispatch
 *   either finds the lease free and runs, or finds it held and is run again after the release. A run
 *   that starts later (the entry taken over from a dead holder, or any fresh acquire) answers the flag
 *   too, and clears it. (Only a job given up below can leave its flag behind: one small key.)
 * - An entry delivered more than `maxDeliveries` times is given up: acknowledged, and `onGiveUp` ends
 *   the job with a clear error, so a job that kills its workers cannot loop forever.
 * - Finished entries are acknowledged and deleted. Losing Redis loses nothing that matters: the event
 *   store knows every unfinished job and the reconciler queues them again.
 * - A handler that releases its job (its worker is shutting down) ends its run the same way, and the
 *   release adds a new entry for the job: another worker takes it at once, not after the lease. An
 *   entry read after consuming stopped is handed back so, unstarted (acknowledged, and added again).
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
  /** How long a read blocks waiting for new entries (bounds how fast stopConsuming() returns). */
  blockMs?: number;
  logger?: Logger;
}

type Entry = [id: string, fields: string[]];

/** The lease scripts below, as commands on the connection. */
interface LeaseScripts {
  acquireLease(key: string, redispatchKey: string, holder: string, entry: string, leaseMs: number, reclaimed: string): Promise<number>;
  renewLease(stream: string, key: string, group: string, consumer: string, entry: string, holder: string, leaseMs: number): Promise<number>;
  releaseLease(key: string, redispatchKey: string, stream: string, holder: string, jobId: string, handedBack: "0" | "1"): Promise<number>;
}

/**
 * Starts holding a job for an entry. KEYS: the lease key, the job's redispatch flag; ARGV: this
 * consumer's holder value, the entry id, lease ms, "1" when the entry was taken over from a silent
 * worker. Returns 1 when held. A free lease is taken; a lease held through this same entry is taken
 * over only when the entry itself was reclaimed (its previous holder stopped heartbeating it for a
 * whole lease). A run that starts here comes after every dispatch flagged so far, so it clears the
 * flag. When the lease is held, the flag is set: the holder's release dispatches the job again.
 */
const ACQUIRE = `
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] or (ARGV[4] == '1' and string.sub(current, -string.len(ARGV[2]) - 1) == '|' .. ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
redis.call('SET', KEYS[2], '1')
return 0`;

/**
 * The heartbeat: resets the entry's idle time and renews the lease in one step, so the two expire
 * together. KEYS: stream, lease key; ARGV: group, consumer, entry id, holder value, lease ms.
 * Returns 0, touching nothing, when another holder has the lease (this one lost it after a pause
 * longer than the lease). A lease that is simply gone (Redis restarted empty, or it expired during a
 * pause and nobody took it) is taken back: this holder is alive and running the job, and leaving the
 * job unheld would let the reconciler dispatch it to a second worker. Its own release cannot be undone
 * this way: the heartbeat stops before the release is sent, and a renewal already sent on the same
 * connection runs before it. The entry may be gone with the stream (restart): claiming it is skipped.
 */
const RENEW = `
local current = redis.call('GET', KEYS[2])
if current ~= false and current ~= ARGV[4] then return 0 end
pcall(redis.call, 'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
return 1`;

/**
 * Ends a run. KEYS: the lease key, the job's redispatch flag, the stream; ARGV: holder value, job id,
 * "1" when the run handed the job back unfinished. Releases the lease if this holder still has it.
 * Unless another holder has taken the lease over (its own release answers the flag), a flag set while
 * this run held the job is cleared, and the job gets a new entry when flagged or handed back.
 * Returns 1 when it added one.
 */
const RELEASE = `
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then redis.call('DEL', KEYS[1]) elseif current ~= false then return 0 end
local flagged = redis.call('DEL', KEYS[2]) == 1
if flagged or ARGV[3] == '1' then
  redis.call('XADD', KEYS[3], '*', 'job', ARGV[2])
  return 1
end
return 0`;

export class RedisJobQueue implements JobQueue {
  readonly kind = "redis";
  private readonly commands: Redis;
  private readonly scripts: LeaseScripts;
  private readonly reader: Redis;
  private readonly stream: string;
  private readonly group: string;
  readonly consumer: string;
  private readonly leaseMs: number;
  private readonly maxDeliveries: number;
  private readonly blockMs: number;
  /** Set when consuming stops (a worker's stop): nothing new starts; the connections stay open. */
  private stopping = false;
  private closed = false;
  private lostConnection = false;
  private active = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private loop: Promise<void> | undefined;
  private slotFreed: (() => void) | undefined;

  constructor(private readonly options: RedisJobQueueOptions) {
    const connection = { maxRetriesPerRequest: null } as const;
    this.commands = new Redis(options.url, connection);
    // Sent once and run by hash afterwards (EVALSHA): a lease costs one small round trip.
    this.commands.defineCommand("acquireLease", { numberOfKeys: 2, lua: ACQUIRE });
    this.commands.defineCommand("renewLease", { numberOfKeys: 2, lua: RENEW });
    this.commands.defineCommand("releaseLease", { numberOfKeys: 3, lua: RELEASE });
    this.scripts = this.commands as unknown as LeaseScripts;
    this.reader = new Redis(options.url, connection); // blocking reads get their own connection
    for (const c of [this.commands, this.reader]) c.on("error", (err) => options.logger?.warn("redis connection error", { error: err }));
    // Before the first connection, commands wait for it (bounded by enqueueTimeoutMs); once a live
    // connection is lost, enqueue fails at once until it is back.
    this.commands.on("close", () => (this.lostConnection = true));
    this.commands.on("ready", () => (this.lostConnection = false));
    this.stream = options.stream ?? "agentry:jobs";
    this.group = options.group ?? "workers";
    this.consumer = options.consumer ?? `${hostname()}-${process.pid}-${crypto.randomUUID().slice(0, 8)}`;
    this.leaseMs = options.leaseMs ?? 30_000;
    this.maxDeliveries = options.maxDeliveries ?? 5;
    this.blockMs = options.blockMs ?? 1000;
  }

  /**
   * Adds a job. While Redis is away it fails at once rather than queueing the command until Redis is
   * back, and a slow Redis fails it after `enqueueTimeoutMs`: the job is already durable in the event
   * store, and the reconciler dispatches it again.
   */
  async enqueue(jobId: string): Promise<void> {
    if (this.lostConnection) throw new Error("Redis is not connected");
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

  /** The command connection stays open: an API process still enqueues while its HTTP side drains. */
  async stopConsuming(): Promise<void> {
    this.stopping = true;
    this.slotFreed?.();
    await this.loop?.catch(() => {});
    await Promise.allSettled([...this.inFlight]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.stopConsuming();
    this.reader.disconnect();
    await this.commands.quit().catch(() => this.commands.disconnect());
  }

  /** True while a live worker holds the job's lease (it is running it, or was within the last lease). */
  async isHeld(jobId: string): Promise<boolean> {
    return (await this.commands.exists(this.leaseKey(jobId))) === 1;
  }

  private leaseKey(jobId: string): string {
    return `${this.stream}:lease:${jobId}`;
  }

  /** Set while a dispatch of the job arrived during a run that held it; the run's release answers it. */
  private redispatchKey(jobId: string): string {
    return `${this.stream}:redispatch:${jobId}`;
  }

  /** False from the loss of a live connection to Redis until it is back. */
  get connected(): boolean {
    return !this.lostConnection;
  }

  /** The command connection, for tests that inspect the stream. */
  commandsForTests(): Redis {
    return this.commands;
  }

  /** Jobs this consumer took over from a holder that stopped renewing its lease (for metrics). */
  leaseTakeovers = 0;

  /** Entries not yet delivered to any worker: the stream's length less those delivered and unacknowledged. */
  async waitingCount(): Promise<number> {
    // Before any worker has created the group (an API process started first), nothing was delivered.
    const pending = this.pendingCount().catch((err) => {
      if (String((err as Error).message).includes("NOGROUP")) return 0;
      throw err;
    });
    const [length, delivered] = await Promise.all([this.commands.xlen(this.stream), pending]);
    return Math.max(0, length - delivered);
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
    while (!this.stopping) {
      try {
        await this.ensureGroup();
        let reclaimFrom = "0-0";
        while (!this.stopping) {
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
        if (this.stopping) return;
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
    if (this.stopping) {
      // Read as this consumer stops: another takes it now rather than after a lease.
      await this.commands.multi().xadd(this.stream, "*", "job", jobId).xack(this.stream, this.group, id).xdel(this.stream, id).exec();
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
    const lease = { key: this.leaseKey(jobId), redispatchKey: this.redispatchKey(jobId), holder: `${this.consumer}|${id}`, jobId };
    const held = await this.scripts.acquireLease(lease.key, lease.redispatchKey, lease.holder, id, this.leaseMs, reclaimed ? "1" : "0");
    if (held !== 1) {
      // Another live entry holds this job. The acquire flagged the job, so the holder's release queues
      // it again even if the holder has already decided what to do: this entry can go.
      this.options.logger?.debug("job already held elsewhere; its release will dispatch it again", { job_id: jobId });
      await this.finish(id);
      return;
    }
    if (reclaimed) this.leaseTakeovers++;
    this.active++;
    let lost = false;
    const heartbeat = setInterval(() => {
      void this.scripts.renewLease(this.stream, lease.key, this.group, this.consumer, id, lease.holder, this.leaseMs).then((ok) => {
        if (ok !== 1 && !lost) {
          lost = true;
          // Only a pause longer than the lease gets here; the job stream's attempt check keeps the
          // new holder's writes and ours apart.
          this.options.logger?.warn("lost the lease on a running job to another worker", { job_id: jobId });
        }
      }).catch(() => {});
    }, Math.max(50, Math.floor(this.leaseMs / 3)));
    const work = handler(jobId)
      .catch((err) => this.options.logger?.error("job handler failed", { job_id: jobId, error: err as Error }))
      .then((outcome) => {
        // Stopped before the release is sent: a heartbeat after it would find the lease gone (and a
        // renewal sent earlier on this connection runs before it).
        clearInterval(heartbeat);
        return this.finish(id, lease, outcome === "released");
      })
      .catch((err) => this.options.logger?.warn("could not acknowledge a finished job; it will be delivered again", { job_id: jobId, error: err as Error }))
      .finally(() => {
        clearInterval(heartbeat);
        this.active--;
        this.inFlight.delete(work);
        this.slotFreed?.();
      });
    this.inFlight.add(work);
  }

  /**
   * Acknowledges and deletes an entry, releasing the lease it held in the same round trip (and adding
   * a new entry for the job when a dispatch arrived while it was held, or the run handed it back).
   */
  private async finish(id: string, lease?: { key: string; redispatchKey: string; holder: string; jobId: string }, handedBack = false): Promise<void> {
    const tx = this.commands.multi();
    if (lease) (tx as unknown as LeaseScripts).releaseLease(lease.key, lease.redispatchKey, this.stream, lease.holder, lease.jobId, handedBack ? "1" : "0");
    const results = await tx.xack(this.stream, this.group, id).xdel(this.stream, id).exec();
    if (lease && results?.[0]?.[1] === 1) this.options.logger?.debug(handedBack ? "handed the job back; queued it again" : "the job was dispatched while it ran; queued it again", { job_id: lease.jobId });
  }
}
