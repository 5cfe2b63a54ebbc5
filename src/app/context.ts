/**
 * Everything the application services, routes and workers share, built once by the composition root.
 */
import type { Metrics } from "../metrics/registry.ts";
import type { Database } from "bun:sqlite";
import { TimeoutError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import { agentDecider, type AgentCommand, type AgentEvent, type AgentState } from "../domain/agent/agent.ts";
import { jobDecider, type JobCommand, type JobEvent, type JobState } from "../domain/job/job.ts";
import { sessionDecider, type SessionCommand, type SessionEvent, type SessionState } from "../domain/session/session.ts";
import { agentEvents } from "../domain/agent/events.ts";
import { idempotencyDecider, idempotencyEvents, type IdempotencyCommand, type IdempotencyEvent, type IdempotencyState } from "../domain/idempotency/idempotency.ts";
import { jobEvents } from "../domain/job/events.ts";
import { sessionEvents } from "../domain/session/events.ts";
import { agentStream, appStream, budgetStream, credentialsStream, idempotencyStream, jobStream, memoryStream, sessionStream } from "../domain/streams.ts";
import { appDecider, type AppCommand, type AppEvent, type AppState } from "../domain/app/app.ts";
import { appEvents } from "../domain/app/events.ts";
import { credentialDecider, type CredentialCommand, type CredentialEvent, type CredentialsState } from "../domain/credential/credential.ts";
import { credentialEvents } from "../domain/credential/events.ts";
import { memoryDecider, type MemoryCommand, type MemoryEvent, type MemoryState } from "../domain/memory/memory.ts";
import { memoryEvents } from "../domain/memory/events.ts";
import type { EventStore } from "../eventstore/port.ts";
import type { JobQueue } from "../jobs/queue.ts";
import type { LlmProvider } from "../llm/provider.ts";
import type { ProjectionRunner } from "../projections/runner.ts";
import type { LiveEvents } from "./liveEvents.ts";
import type { StreamTails } from "./streamTails.ts";
import type { TurnCoordinator } from "./turnCoordinator.ts";
import type { SseLimits } from "../http/sse.ts";
import type { ConnectionProviders } from "../llm/connections.ts";
import type { OutboundPolicy } from "../tools/httpTool.ts";
import type { SecretBox } from "../secrets/secretBox.ts";
import { Repository } from "./repository.ts";
import { blobDecider, fileDecider, type BlobCommand, type BlobEvent, type BlobState, type FileCommand, type FileEvent, type FileState } from "../domain/file/file.ts";
import { blobEvents, fileEvents } from "../domain/file/events.ts";
import { blobStream, fileStream } from "../domain/streams.ts";
import type { FileRuntime } from "./files.ts";
import { budgetDecider, budgetEvents, type BudgetCommand, type BudgetEvent, type BudgetState } from "../domain/billing/budget.ts";
import { skillDecider, type SkillCommand, type SkillEvent, type SkillsState } from "../domain/skill/skill.ts";
import { skillEvents } from "../domain/skill/events.ts";
import { skillsStream } from "../domain/streams.ts";
import type { PriceTable } from "../domain/billing/prices.ts";
import type { MemoryService } from "./memory.ts";

export interface Repositories {
  agents: Repository<AgentCommand, AgentEvent, AgentState>;
  sessions: Repository<SessionCommand, SessionEvent, SessionState>;
  jobs: Repository<JobCommand, JobEvent, JobState>;
  /** Files' records (`file-<id>`) and which files reference each blob's content (`blob-<sha256>`). */
  files: Repository<FileCommand, FileEvent, FileState>;
  blobs: Repository<BlobCommand, BlobEvent, BlobState>;
  idempotency: Repository<IdempotencyCommand, IdempotencyEvent, IdempotencyState>;
  apps: Repository<AppCommand, AppEvent, AppState>;
  budgets: Repository<BudgetCommand, BudgetEvent, BudgetState>;
  /** Each app's own skills, by the app's data partition id (`skills-<app>`). */
  skills: Repository<SkillCommand, SkillEvent, SkillsState>;
  /** End users' model credentials (BYOS), by `userCredentialsId(dataAppId, userId)`. */
  credentials: Repository<CredentialCommand, CredentialEvent, CredentialsState>;
  /** Memory entries, one stream each (`memory-<mem_id>`). */
  memory: Repository<MemoryCommand, MemoryEvent, MemoryState>;
}

export const createRepositories = (store: EventStore, tails?: StreamTails): Repositories => ({
  agents: new Repository(store, agentDecider, agentEvents, agentStream, tails),
  sessions: new Repository(store, sessionDecider, sessionEvents, sessionStream, tails),
  jobs: new Repository(store, jobDecider, jobEvents, jobStream, tails),
  files: new Repository(store, fileDecider, fileEvents, fileStream, tails),
  blobs: new Repository(store, blobDecider, blobEvents, blobStream, tails),
  idempotency: new Repository(store, idempotencyDecider, idempotencyEvents, idempotencyStream, tails),
  apps: new Repository(store, appDecider, appEvents, appStream, tails),
  budgets: new Repository(store, budgetDecider, budgetEvents, budgetStream, tails),
  skills: new Repository(store, skillDecider, skillEvents, skillsStream, tails),
  credentials: new Repository(store, credentialDecider, credentialEvents, credentialsStream, tails),
  memory: new Repository(store, memoryDecider, memoryEvents, memoryStream, tails),
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
  /** How long an Idempotency-Key claim lives without renewal (its holder renews it every third of that). */
  idempotencyClaimTtlMs: number;
  /** Session ↔ job coordination: what follows a job's end or a session's deletion. */
  turns: TurnCoordinator;
  /** Prometheus metrics (src/metrics/registry.ts); absent where nothing is measured. */
  metrics?: Metrics;
  /** How much an SSE stream may buffer for a slow client, and for how long (defaults when absent). */
  sse?: SseLimits;
  /** Which non-public addresses HTTP tools may call (none unless the operator lists them). */
  outbound?: OutboundPolicy;
  /** Hot streams' tails in memory, kept current by the live feed (absent: every read goes to the store). */
  tails?: StreamTails;
  /** The server's model prices (MODEL_PRICES_FILE); each app's own prices go on top. Absent: none. */
  prices?: PriceTable;
  /** Files: the blob store, the file settings and the URL signer (absent: the server stores no files). */
  files?: FileRuntime;
  /** Seals and opens the secrets events and read models hold (HTTP-tool headers, …), per app. */
  secrets: SecretBox;
  /**
   * For a request whose key is limited to some agents: those agents. Everything of another agent (the
   * agent, its sessions, jobs and runs) is refused with 403 agent_not_allowed. Absent: no limit.
   */
  allowedAgents?: readonly string[] | null;
  /**
   * For a request that acts as one end user (an end-user token, or a key bound to a user): that user.
   * Another user's sessions, jobs and runs are refused with 403 permission_denied. Absent: any user.
   */
  actingUser?: string | null;
  /** Providers built from apps' model connections (absent: agents run on the server's providers only). */
  connections?: ConnectionProviders;
  /** Memory search and its embedder (absent: memory ranks by BM25 alone). */
  memory?: MemoryService;
  /**
   * Aborted when the process begins shutting down: long-polls answer at once with what they have, and
   * SSE streams end with a `reconnect` event, so their clients resume from their cursor elsewhere
   * instead of holding the shutdown open.
   */
  closing?: AbortSignal;
}

/**
 * Waits (bounded) until the read models include `position` (read-your-writes); true at once for null.
 * Resolves false when they did not catch up in time: the write has committed regardless, so callers
 * answer success (built from the events) and report the lag, never an error.
 */
export async function readYourWrites(ctx: AppContext, position: bigint | null, signal?: AbortSignal): Promise<boolean> {
  if (position === null) return true;
  try {
    // A caller that went away stops the wait: its connection is not held open for a read it won't make.
    await ctx.projections.waitForPosition(position, ctx.readYourWritesTimeoutMs, signal);
    return true;
  } catch (err) {
    if (err instanceof TimeoutError) return false;
    throw err;
  }
}
