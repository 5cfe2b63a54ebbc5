import { InProcessJobQueue } from "../../src/jobs/queue.ts";
import { RedisJobQueue } from "../../src/jobs/redisQueue.ts";
import { startRedis } from "../support/redis.ts";
import { jobQueueContract } from "./jobQueue.contract.ts";

jobQueueContract("in-process", async () => {
  return { make: () => new InProcessJobQueue(), shared: false, leaseMs: 50, cleanup: async () => {} };
});

jobQueueContract("redis", async () => {
  const redis = await startRedis();
  let n = 0;
  return {
    // Each test gets its own stream so leftovers of one cannot reach another.
    make: (options = {}) => new RedisJobQueue({ url: redis.url, stream: `jobs:${options.backlog ?? n++}`, blockMs: 100, leaseMs: options.leaseMs ?? 150 }),
    shared: true,
    leaseMs: 150,
    cleanup: () => redis.stop(),
  };
});
