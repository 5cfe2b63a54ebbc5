/** Leases of the Redis job queue across real processes. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import Redis from "ioredis";
import { join } from "node:path";
import { RedisJobQueue } from "../../src/jobs/redisQueue.ts";
import { startRedis, type RedisServer } from "../support/redis.ts";

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis.stop();
});

const until = async (check: () => boolean | Promise<boolean>, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await Bun.sleep(20);
  }
};

test("kill -9 of the worker holding a job: another worker takes it over after the lease, once", async () => {
  const stream = "jobs:crash";
  const child = Bun.spawn(["bun", join(import.meta.dir, "../support/queueWorker.ts"), redis.url, stream, "400"], { stdout: "pipe", stderr: "inherit" });
  const producer = new RedisJobQueue({ url: redis.url, stream });
  await producer.enqueue("job_crashy");
  const reader = child.stdout.getReader();
  let out = "";
  while (!out.includes("started job_crashy")) out += new TextDecoder().decode((await reader.read()).value);
  child.kill("SIGKILL");
  await child.exited;

  const survivor = new RedisJobQueue({ url: redis.url, stream, leaseMs: 400, blockMs: 100 });
  const taken: string[] = [];
  const owners: Array<[consumer: string, deliveries: number]> = [];
  survivor.consume(async (id) => {
    // Taken over, not delivered anew: the same entry, now this consumer's, on its second delivery.
    const pending = (await survivor.commandsForTests().xpending(stream, "workers", "-", "+", 10)) as Array<[string, string, number, number]>;
    owners.push(...pending.map(([, consumer, , deliveries]) => [consumer, Number(deliveries)] as [string, number]));
    taken.push(id);
  }, 2);
  await until(() => taken.length > 0);
  expect(taken).toEqual(["job_crashy"]);
  expect(owners).toEqual([[survivor.consumer, 2]]);
  // Counted for agentry_queue_lease_takeovers_total; nothing is left waiting for delivery.
  expect(survivor.leaseTakeovers).toBe(1);
  await until(async () => (await survivor.pendingCount()) === 0);
  expect(await survivor.waitingCount()).toBe(0);
  await Bun.sleep(600);
  expect(taken).toEqual(["job_crashy"]); // acknowledged: not taken again
  await survivor.close();
  await producer.close();
});

test("the queue's depth counts the entries no worker has been handed yet", async () => {
  const stream = "jobs:depth";
  const producer = new RedisJobQueue({ url: redis.url, stream });
  expect(await producer.waitingCount()).toBe(0);
  await producer.enqueue("job_depth_1");
  await producer.enqueue("job_depth_2");
  // No worker yet (no consumer group): both wait.
  expect(await producer.waitingCount()).toBe(2);
  const worker = new RedisJobQueue({ url: redis.url, stream, blockMs: 100 });
  const release = Promise.withResolvers<void>();
  const started: string[] = [];
  worker.consume(async (id) => { started.push(id); await release.promise; }, 1);
  await until(() => started.length === 1);
  // One handed out (pending), one still waiting.
  expect(await producer.waitingCount()).toBe(1);
  release.resolve();
  await until(() => started.length === 2);
  await until(async () => (await producer.waitingCount()) === 0);
  await worker.close();
  await producer.close();
});

test("a live worker's heartbeat keeps a job longer than the lease from being taken", async () => {
  const stream = "jobs:long";
  const holder = new RedisJobQueue({ url: redis.url, stream, leaseMs: 300, blockMs: 100 });
  const other = new RedisJobQueue({ url: redis.url, stream, leaseMs: 300, blockMs: 100 });
  const byHolder: string[] = [];
  const byOther: string[] = [];
  holder.consume(async (id) => { byHolder.push(id); await Bun.sleep(1500); }, 1);
  await holder.enqueue("job_long");
  await until(() => byHolder.length === 1);
  other.consume(async (id) => { byOther.push(id); }, 1);
  await Bun.sleep(1600);
  expect(byOther).toEqual([]);
  expect(other.leaseTakeovers).toBe(0);
  await holder.close();
  await other.close();
});

test("a job whose workers keep dying is given up after the delivery limit", async () => {
  const stream = "jobs:poison";
  const producer = new RedisJobQueue({ url: redis.url, stream });
  await producer.enqueue("job_poison");
  // Each worker takes the job and dies holding it (simulated by dropping its connections).
  for (let i = 0; i < 3; i++) {
    const child = Bun.spawn(["bun", join(import.meta.dir, "../support/queueWorker.ts"), redis.url, stream, "200"], { stdout: "pipe", stderr: "inherit" });
    const reader = child.stdout.getReader();
    let out = "";
    const deadline = Date.now() + 10_000;
    while (!out.includes("started job_poison") && Date.now() < deadline) out += new TextDecoder().decode((await reader.read()).value);
    child.kill("SIGKILL");
    await child.exited;
    await Bun.sleep(250);
  }
  const gaveUp: Array<[string, number]> = [];
  const handled: string[] = [];
  const last = new RedisJobQueue({ url: redis.url, stream, leaseMs: 200, maxDeliveries: 3, blockMs: 100 });
  last.consume(async (id) => { handled.push(id); }, 1, { onGiveUp: async (id, n) => { gaveUp.push([id, n]); } });
  await until(() => gaveUp.length > 0);
  expect(gaveUp[0]![0]).toBe("job_poison");
  expect(gaveUp[0]![1]).toBeGreaterThan(3);
  expect(handled).toEqual([]);
  await until(async () => (await last.pendingCount()) === 0);
  await last.close();
  await producer.close();
});

test("a job is held while its handler runs; a repeated entry for a held job does not run it alongside the holder", async () => {
  const stream = "jobs:held";
  const a = new RedisJobQueue({ url: redis.url, stream, leaseMs: 300, blockMs: 50 });
  const b = new RedisJobQueue({ url: redis.url, stream, leaseMs: 300, blockMs: 50 });
  const runs: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let aDone = false;
  a.consume(async (id) => {
    runs.push(aDone ? `a(after):${id}` : `a:${id}`);
    if (runs.length === 1) { await gate; aDone = true; }
  }, 1);
  await a.enqueue("job_held");
  await until(() => runs.length === 1);
  expect(await a.isHeld("job_held")).toBe(true);
  expect(await b.isHeld("job_held")).toBe(true);
  // The reconciler (or an approval) dispatches it again while it runs: another worker gets the
  // entry, sees the lease and leaves the job to its holder.
  b.consume(async (id) => { runs.push(aDone ? `b(after):${id}` : `b:${id}`); }, 1);
  await b.enqueue("job_held");
  await until(async () => (await b.commandsForTests().xlen(stream)) === 1); // only a's entry is left
  await Bun.sleep(1000); // well past the lease: a's heartbeat keeps it
  expect(await b.isHeld("job_held")).toBe(true);
  expect(runs).toEqual(["a:job_held"]);
  release();
  // The holder's release queues the job once more (the dispatch may carry news the holder had not
  // seen), and that run starts only after the holder's has ended.
  await until(() => runs.length === 2, 2000);
  expect(runs[1]).toMatch(/^[ab]\(after\):job_held$/);
  await until(async () => !(await b.isHeld("job_held")) && (await b.pendingCount()) === 0);
  await Bun.sleep(300);
  expect(runs.length).toBe(2);
  await a.close();
  await b.close();
});

test("a dispatch that arrives while the holder is returning is run again once the holder releases", async () => {
  // The holder has made its decision (the job now awaits approval, or it is not its session's turn
  // yet) and is returning when the approval's (or the next turn's) dispatch arrives: that entry meets
  // the lease and is acknowledged without running. It must not be lost until the reconciler comes by.
  const stream = "jobs:handoff";
  const a = new RedisJobQueue({ url: redis.url, stream, leaseMs: 300, blockMs: 50 });
  const b = new RedisJobQueue({ url: redis.url, stream, leaseMs: 300, blockMs: 50 });
  const runs: string[] = [];
  let running = 0;
  let peak = 0;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const handler = (who: string) => async (id: string) => {
    runs.push(`${who}:${id}`);
    peak = Math.max(peak, ++running);
    if (runs.length === 1) await gate; // decided; on its way out
    running--;
  };
  a.consume(handler("a"), 1);
  await a.enqueue("job_handoff");
  await until(() => runs.length === 1);
  b.consume(handler("b"), 1);
  await b.enqueue("job_handoff");
  const commands = b.commandsForTests();
  // b took the second entry, met a's lease, and acknowledged and deleted it: only a's entry is left.
  await until(async () => (await commands.xlen(stream)) === 1 && (await b.pendingCount()) === 1);
  expect(runs).toEqual(["a:job_handoff"]);
  release();
  // No reconciler runs here: without the hand-off the job would never run again.
  await until(() => runs.length === 2, 3000);
  expect(runs[1]).toMatch(/^[ab]:job_handoff$/);
  expect(peak).toBe(1);
  await until(async () => (await b.pendingCount()) === 0 && !(await b.isHeld("job_handoff")));
  expect(await commands.exists(`${stream}:redispatch:job_handoff`)).toBe(0);
  await Bun.sleep(300);
  expect(runs.length).toBe(2); // one dispatch, one more run
  await a.close();
  await b.close();
});

test("every dispatch sent while a job runs is followed by a run that starts after it, never two at once", async () => {
  const stream = "jobs:handoff-many";
  const queues = [0, 1].map(() => new RedisJobQueue({ url: redis.url, stream, leaseMs: 300, blockMs: 50 }));
  const ids = Array.from({ length: 20 }, (_, i) => `job_many_${i}`);
  const runs = new Map<string, number>();
  const running = new Map<string, number>();
  let overlap = false;
  for (const queue of queues) {
    queue.consume(async (id) => {
      const n = (runs.get(id) ?? 0) + 1;
      runs.set(id, n);
      if ((running.get(id) ?? 0) > 0) overlap = true;
      running.set(id, (running.get(id) ?? 0) + 1);
      // The first run dispatches its job again just before it returns (as an approval can land right
      // after the plan was proposed), and returns only once a consumer has met its lease with it (the
      // repeated entry raised the job's redispatch flag), so the dispatch always races the release.
      if (n === 1) {
        await queue.enqueue(id);
        const commands = queue.commandsForTests();
        await until(async () => (await commands.exists(`${stream}:redispatch:${id}`)) === 1, 3000);
      }
      running.set(id, running.get(id)! - 1);
    }, ids.length); // enough slots that holders waiting for their flag never starve the readers
  }
  for (const id of ids) await queues[0]!.enqueue(id);
  await until(() => ids.every((id) => (runs.get(id) ?? 0) >= 2), 3000);
  expect(overlap).toBe(false);
  await until(async () => (await queues[0]!.pendingCount()) === 0);
  for (const queue of queues) await queue.close();
});

test("a heartbeat due while the release is in flight does not bring the lease back", async () => {
  // The release rides in a MULTI with the acknowledgement. Writes are paused on the server while that
  // MULTI is on its way, so any heartbeat sent meanwhile is queued behind it and would run after the
  // release.
  const stream = "jobs:release";
  const queue = new RedisJobQueue({ url: redis.url, stream, leaseMs: 900, blockMs: 50 });
  const admin = new Redis(redis.url);
  const scripts = queue.commandsForTests() as unknown as { renewLease: (...args: unknown[]) => Promise<number> };
  const renew = scripts.renewLease.bind(scripts);
  let returned = false;
  let renewalsAfterReturn = 0;
  scripts.renewLease = (...args: unknown[]) => {
    if (returned) renewalsAfterReturn++;
    return renew(...args);
  };
  let ran = false;
  queue.consume(async () => {
    ran = true;
    await admin.call("CLIENT", "PAUSE", "20000", "WRITE");
    returned = true;
  }, 1);
  await queue.enqueue("job_release");
  try {
    await until(() => returned);
    await Bun.sleep(900); // about three heartbeat periods with the release held up
  } finally {
    await admin.call("CLIENT", "UNPAUSE");
  }
  await until(async () => (await queue.pendingCount()) === 0);
  expect(ran).toBe(true);
  expect(await queue.isHeld("job_release")).toBe(false);
  expect(renewalsAfterReturn).toBe(0);
  admin.disconnect();
  await queue.close();
});

test("a lease that vanished while its holder runs is taken back by the next heartbeat; no other worker runs the job", async () => {
  const stream = "jobs:lost";
  const a = new RedisJobQueue({ url: redis.url, stream, leaseMs: 300, blockMs: 50 });
  const b = new RedisJobQueue({ url: redis.url, stream, leaseMs: 300, blockMs: 50 });
  const runs: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  a.consume(async (id) => { runs.push(`a:${id}`); await gate; }, 1);
  await a.enqueue("job_lost");
  await until(() => runs.length === 1);
  b.consume(async (id) => { runs.push(`b:${id}`); }, 1);
  // The lease is gone while its holder still runs (it expired during a pause, or Redis lost it).
  await a.commandsForTests().del(`${stream}:lease:job_lost`);
  await until(async () => await a.isHeld("job_lost"), 3000); // the holder's heartbeat takes it back
  await Bun.sleep(900); // three leases' worth: b would have taken the entry over by now
  expect(runs).toEqual(["a:job_lost"]);
  release();
  await until(async () => (await a.pendingCount()) === 0);
  expect(await a.isHeld("job_lost")).toBe(false); // released when the run ended
  await a.close();
  await b.close();
});

test("a running job stays held when Redis restarts empty, so the reconciler does not hand it to another worker", async () => {
  const own = await startRedis();
  const queue = new RedisJobQueue({ url: own.url, stream: "jobs:restart", leaseMs: 600, blockMs: 50 });
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let started = false;
  queue.consume(async () => {
    started = true;
    await gate;
  }, 1);
  await queue.enqueue("job_long");
  await until(() => started);
  await own.restartEmpty();
  await until(async () => queue.connected && (await queue.isHeld("job_long")), 5000);
  release();
  await queue.close();
  await own.stop();
});

test("while Redis is down, enqueue fails at once instead of waiting for it", async () => {
  const down = await startRedis();
  const queue = new RedisJobQueue({ url: down.url, stream: "jobs:down", enqueueTimeoutMs: 120_000 });
  await queue.enqueue("job_before");
  await down.down();
  await until(() => !queue.connected);
  // With a two-minute enqueue timeout, a wait for Redis would outlast this test's own timeout.
  await expect(queue.enqueue("job_during")).rejects.toThrow("not connected");
  await down.up();
  await queue.close();
  await down.stop();
});
