/** Leases of the Redis job queue across real processes. */
import { afterAll, beforeAll, expect, test } from "bun:test";
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
  await until(async () => (await survivor.pendingCount()) === 0);
  await Bun.sleep(600);
  expect(taken).toEqual(["job_crashy"]); // acknowledged: not taken again
  await survivor.close();
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

test("a job is held while its handler runs; a repeated entry for a held job does not run it twice", async () => {
  const stream = "jobs:held";
  const a = new RedisJobQueue({ url: redis.url, stream, leaseMs: 300, blockMs: 50 });
  const b = new RedisJobQueue({ url: redis.url, stream, leaseMs: 300, blockMs: 50 });
  const runs: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  a.consume(async (id) => { runs.push(`a:${id}`); await gate; }, 1);
  await a.enqueue("job_held");
  await until(() => runs.length === 1);
  expect(await a.isHeld("job_held")).toBe(true);
  expect(await b.isHeld("job_held")).toBe(true);
  // The reconciler (or an approval) dispatches it again while it runs: another worker gets the
  // entry, sees the lease and drops it.
  b.consume(async (id) => { runs.push(`b:${id}`); }, 1);
  await b.enqueue("job_held");
  await until(async () => (await b.pendingCount()) === 1); // only a's entry is left
  await Bun.sleep(1000); // well past the lease: a's heartbeat keeps it
  expect(await b.isHeld("job_held")).toBe(true);
  release();
  await until(async () => !(await b.isHeld("job_held")));
  await until(async () => (await b.pendingCount()) === 0);
  expect(runs).toEqual(["a:job_held"]);
  await a.close();
  await b.close();
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
