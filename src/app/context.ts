/**
 * Everything the application services, routes and workers share, built once by the composition root.
 */
import type { Database } from "bun:sqlite";
import type { Logger } from "../core/logger.ts";
import { agentDecider, type AgentCommand, type AgentEvent, type AgentState } from "../domain/agent/agent.ts";
import { jobDecider, type JobCommand, type JobEvent, type JobState } from "../domain/job/job.ts";
import { sessionDecider, type SessionCommand, type SessionEvent, type SessionState } from "../domain/session/session.ts";
import { agentStream, jobStream, sessionStream } from "../domain/streams.ts";
import type { EventStore } from "../eventstore/port.ts";
import type { JobQueue } from "../jobs/queue.ts";
import type { LlmProvider } from "../llm/provider.ts";
import type { ProjectionRunner } from "../projections/runner.ts";
import type { LiveEvents } from "./liveEvents.ts";
import { Repository } from "./repository.ts";

export interface Repositories {
  agents: Repository<AgentCommand, AgentEvent, AgentState>;
  sessions: Repository<SessionCommand, SessionEvent, SessionState>;
  jobs: Repository<JobCommand, JobEvent, JobState>;
}

export const createRepositories = (store: EventStore): Repositories => ({
  agents: new Repository(store, agentDecider, agentStream),
  sessions: new Repository(store, sessionDecider, sessionStream),
  jobs: new Repository(store, jobDecider, jobStream),
});

/** Which jobs this process is running right now, so a cancel can abort the model request at once. */
export interface RunningJobs {
  isRunning(jobId: string): boolean;
  abort(jobId: string): void;
}

export interface AppContext {
  store: EventStore;
  repos: Repositories;
  /** The read-model database (queries only; the projection runner writes). */
  db: Database;
  projections: ProjectionRunner;
  queue: JobQueue;
  running: RunningJobs;
  live: LiveEvents;
  providers: ReadonlyMap<string, LlmProvider>;
  defaultProvider: string;
  logger: Logger;
  appId: string;
  readYourWritesTimeoutMs: number;
}

/** Waits until the read models include `position` (read-your-writes); a no-op for null. */
export async function readYourWrites(ctx: AppContext, position: bigint | null): Promise<void> {
  if (position !== null) await ctx.projections.waitForPosition(position, ctx.readYourWritesTimeoutMs);
}
