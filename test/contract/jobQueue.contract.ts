/** The JobQueue contract: the in-process adapter and the Redis adapter (against a real redis-server). */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { JobQueue } from "../../src/jobs/queue.ts";

export interface QueueTarget {
  /**
   * A new queue: each over a backlog of its own, or over `backlog`'s when named (for Redis: the same
   * stream and group); `leaseMs` overrides the lease where the adapter has one.
   */
  make(options?: { backlog?: string; leaseMs?: number }): JobQueue;
  /** Whether queues made over the same backlog share its jobs (consumers in other processes). */
  shared: boolean;
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

/** Waits (bounded) until the job's last delivery has returned and the queue holds it no more. */
const heldNoMore = async (queue: JobQueue, jobId: string) => {
  const deadline = Date.now() + 10_000;
  while (await queue.isHeld(jobId)) {
    if (Date.now() > deadline) throw new Error(`${jobId} stayed held`);
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

    test("a released job is held no more and is handed out again at once, long before a lease could expire", async () => {
      // A lease far longer than the test: only the release can bring the job back in time.
      const queue = target.make({ leaseMs: 600_000 });
      const id = `job_${name}_released`;
      const deliveries: string[] = [];
      let second!: () => void;
      const secondStarted = new Promise<void>((resolve) => (second = resolve));
      let finishSecond!: () => void;
      const gate = new Promise<void>((resolve) => (finishSecond = resolve));
      queue.consume(async (jobId) => {
        deliveries.push(jobId);
        if (deliveries.length === 1) return "released";
        second();
        await gate;
      }, 2);
      await queue.enqueue(id);
      await secondStarted;
      // Held again by its second delivery, and free once that returns.
      expect(await queue.isHeld(id)).toBe(true);
      finishSecond();
      await heldNoMore(queue, id);
      expect(deliveries).toEqual([id, id]);
      await queue.close();
    });

    test("once consuming stops nothing new starts; jobs released or left unstarted go to the next consumer", async () => {
      const backlog = `${name}_handover`;
      const first = target.make({ backlog, leaseMs: 600_000 });
      const running = `job_${name}_running`;
      const late = `job_${name}_late`;
      const seenByFirst: string[] = [];
      let started!: () => void;
      const runningStarted = new Promise<void>((resolve) => (started = resolve));
      let letGo!: () => void;
      const stopped = new Promise<void>((resolve) => (letGo = resolve));
      first.consume(async (jobId) => {
        seenByFirst.push(jobId);
        started();
        await stopped;
        return "released";
      }, 4);
      await first.enqueue(running);
      await runningStarted;
      const stopping = first.stopConsuming();
      // Enqueued through the stopping queue itself (its process still accepts requests as it drains):
      // the producer side stays open, and this consumer must not start it.
      await first.enqueue(late);
      await Bun.sleep(200);
      letGo();
      await stopping;
      expect(seenByFirst).toEqual([running]);
      expect(await first.isHeld(running)).toBe(false);
      if (target.shared) {
        // The next consumer (another process) gets both at once, not after the first one's lease.
        const other = target.make({ backlog, leaseMs: 600_000 });
        const seen: string[] = [];
        other.consume(async (jobId) => { seen.push(jobId); }, 4);
        await until(() => seen.length >= 2);
        expect([...seen].sort()).toEqual([late, running].sort());
        await other.close();
      }
      await first.close();
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
