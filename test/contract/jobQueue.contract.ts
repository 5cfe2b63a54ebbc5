/** The JobQueue contract: the in-process adapter and the Redis adapter (against a real redis-server). */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { JobQueue } from "../../src/jobs/queue.ts";

export interface QueueTarget {
  /** A new queue over the same shared backlog (for Redis: the same stream and group). */
  make(): JobQueue;
  /** How long a delivery is held without a heartbeat before the job is handed out again. */
  leaseMs: number;
  cleanup(): Promise<void>;
}

const until = async (check: () => boolean, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await Bun.sleep(10);
  }
};

export function jobQueueContract(name: string, factory: () => Promise<QueueTarget>): void {
  describe(`JobQueue contract: ${name}`, () => {
    let target: QueueTarget;
    beforeAll(async () => {
      target = await factory();
    });
    afterAll(async () => {
      await target.cleanup();
    });

    test("every enqueued job is handed to the handler", async () => {
      const queue = target.make();
      const seen: string[] = [];
      queue.consume(async (id) => { seen.push(id); }, 4);
      const ids = Array.from({ length: 30 }, (_, i) => `job_${name}_a${i}`);
      for (const id of ids) await queue.enqueue(id);
      await until(() => seen.length >= 30);
      expect([...seen].sort()).toEqual([...ids].sort());
      await queue.close();
    });

    test("no more than `concurrency` jobs run at once", async () => {
      const queue = target.make();
      let running = 0;
      let peak = 0;
      let done = 0;
      queue.consume(async () => {
        running++;
        peak = Math.max(peak, running);
        await Bun.sleep(20);
        running--;
        done++;
      }, 3);
      for (let i = 0; i < 12; i++) await queue.enqueue(`job_${name}_c${i}`);
      await until(() => done >= 12);
      expect(peak).toBeLessThanOrEqual(3);
      expect(peak).toBeGreaterThan(1);
      await queue.close();
    });

    test("a handler that throws does not make the job come back forever", async () => {
      const queue = target.make();
      let calls = 0;
      queue.consume(async () => {
        calls++;
        throw new Error("boom");
      }, 1);
      await queue.enqueue(`job_${name}_boom`);
      await until(() => calls >= 1);
      // Several leases later it has not been handed out again, and it no longer counts as held.
      await Bun.sleep(target.leaseMs * 4);
      expect(calls).toBe(1);
      expect(await queue.isHeld(`job_${name}_boom`)).toBe(false);
      await queue.close();
    });

    test("close waits for the jobs in flight", async () => {
      const queue = target.make();
      let finished = false;
      let started = false;
      queue.consume(async () => {
        started = true;
        await Bun.sleep(200);
        finished = true;
      }, 1);
      await queue.enqueue(`job_${name}_slow`);
      await until(() => started);
      await queue.close();
      expect(finished).toBe(true);
    });
  });
}
