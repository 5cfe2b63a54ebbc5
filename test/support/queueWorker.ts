/**
 * A worker process for the queue fault tests: takes jobs from a Redis job queue, prints
 * `started <job id>` for each and then holds it without finishing, until it is killed.
 *   bun test/support/queueWorker.ts <redis url> <stream> <lease ms>
 */
import { RedisJobQueue } from "../../src/jobs/redisQueue.ts";

const [url, stream, lease] = process.argv.slice(2);
const queue = new RedisJobQueue({ url: url!, stream: stream!, leaseMs: Number(lease), blockMs: 100 });
queue.consume(async (jobId) => {
  process.stdout.write(`started ${jobId}\n`);
  await new Promise(() => {});
}, 1);
