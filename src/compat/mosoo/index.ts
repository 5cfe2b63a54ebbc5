/**
 * The Mosoo-compatible surface, mounted at `/compat/mosoo`: Mosoo's Threads API (`/api/v1/agents/
 * {agentId}/threads`, `/api/v1/threads/{threadId}/…`) over our sessions, turns and files. A Mosoo
 * client changes only its base URL and token (an Agentry API key, sent as `Authorization: Bearer`).
 * A Thread is a session of ours and a Run is one of its jobs, so everything here is readable through
 * `/v1`. `client_external_ref` names one Thread for the app's keys, or for one end user (created on
 * first use: src/compat/shared/clientSessions.ts). A send-events batch is planned whole (batch.ts), and
 * charged a heavy call per run it starts, before any of it is applied, so a refusal writes nothing.
 * Files added to a Thread go to the agent with its next message; the event log places the runs' tool
 * steps among the session's events (log.ts, wire.ts `logWithExtras`).
 * Choices where the doc is silent are recorded in docs/compat.md.
 */
import { Elysia, t } from "elysia";
import type { AppContext } from "../../app/context.ts";
import { agentOrDefault } from "../../app/defaultAgent.ts";
import { getAgent } from "../../app/agentReads.ts";
import { requireUser } from "../../app/access.ts";
import { isKeyUserId, keyUserId } from "../../app/keyUsers.ts";
import { approvePlan, cancelJob, precheckMessage, rejectPlan } from "../../app/turns.ts";
import { acceptedContentType, filesOf, removeFile, storeFile } from "../../app/files.ts";
import { readYourWrites } from "../../app/context.ts";
import { ConflictError, ForbiddenError, NotFoundError, ValidationError } from "../../core/errors.ts";
import { toErrorResponse } from "../../http/errors.ts";
import { decodeCursor, encodeCursor } from "../../http/pagination.ts";
import { newResourceId } from "../../core/ids.ts";
import { spendHeavy } from "../../http/rateLimit.ts";
import { principalOf } from "../../http/auth.ts";
import { afterWrite, create, metaOf } from "../../http/routes/v1/common.ts";
import { acceptMessage, deleteSession, requireSession } from "../../http/routes/v1/sessions/service.ts";
import { getJob, listSessionJobs, type JobRow } from "../../../projections/jobs/index.ts";
import { getFile, listSessionFiles } from "../../../projections/files/index.ts";
import { getSession, listSessions, type SessionRow } from "../../../projections/sessions/index.ts";
import { admitCompat, type CompatAccess } from "../shared/compatAccess.ts";
import { sessionForClientId } from "../shared/clientSessions.ts";
import { AddFileBody, CreateThreadBody, MOSOO_PREFIX, SendEventsBody, contentText, fileView, runView, sentEventsOf, threadView } from "./wire.ts";
import { latestLog, logAfter } from "./log.ts";
import { planBatch, type RunState, type Step } from "./batch.ts";

export interface MosooDeps extends CompatAccess {
  ctx: AppContext;
}

/**
 * The user a Thread belongs to: the end user of an end-user token, else one per key (a Human PAT is one
 * caller), `mosoo-<key id>`. That form is the keys' alone (src/app/keyUsers.ts, `refuseKeyUserIds`).
 */
const mosooUser = (principal: { userId: string | null; keyId: string }): string => principal.userId ?? keyUserId("mosoo", principal.keyId);

/**
 * End-user ids are the app's to choose, so one could be spelled like a key's own user: acting as
 * `mosoo-<key id>` (an end-user token, or `attributed_user_id`) would reach that key's Threads. Such an
 * id is refused here rather than taken for the key's user.
 */
function refuseKeyUserIds(actingUser: string | null, attributedUserId?: string): void {
  // No token is minted for such an id (src/app/keyUsers.ts); one minted before that rule still stops here.
  if (actingUser && isKeyUserId(actingUser)) {
    throw new ForbiddenError("End-user ids spelled as an API key's own user are reserved for the key's own Threads", "reserved_user_id");
  }
  if (attributedUserId && isKeyUserId(attributedUserId)) {
    throw new ValidationError("attributed_user_id may not be spelled as an API key's own user", { param: "attributed_user_id" }, "reserved_user_id");
  }
}

const ThreadParams = t.Object({ threadId: t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" }) });
const AgentParams = t.Object({ agentId: t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" }) });

/** The published Agent of the path: an agent id of ours, or `default` for the app's default agent. 404 / 403 as `/v1`. */
async function agentOf(ctx: AppContext, agentId: string, signal: AbortSignal): Promise<string> {
  const id = await agentOrDefault(ctx, agentId === "default" ? undefined : agentId, signal);
  getAgent(ctx.db, ctx.appId, id, ctx.allowedAgents);
  return id;
}

/** The Thread of the path, as a caller may see it: 404 `session_not_found` otherwise. */
function requireThread(ctx: AppContext, threadId: string): SessionRow {
  return requireSession(ctx, threadId);
}

const latestJob = (ctx: AppContext, sessionId: string): JobRow | null => listSessionJobs(ctx.db, sessionId, 1)[0] ?? null;

/** A run of this Thread by id, as the batch planner sees it; null when it is not one of this Thread's. */
function runOfThread(ctx: AppContext, row: SessionRow, runId: string): RunState | null {
  const job = getJob(ctx.db, ctx.appId, runId);
  return job && job.session_id === row.id ? { id: job.id, status: job.status } : null;
}

/**
 * The job of the Thread's current turn (the first of its turns: the one in flight, which later messages
 * queue behind), if any. A run waiting for a permission decision stays this until it is decided.
 */
function currentJob(ctx: AppContext, row: SessionRow): JobRow | null {
  const turns = JSON.parse(row.turns) as string[];
  return turns[0] ? getJob(ctx.db, ctx.appId, turns[0]) : null;
}

/** The Thread's run in flight, as the batch planner sees it. */
function currentRun(ctx: AppContext, row: SessionRow): RunState | null {
  const job = currentJob(ctx, row);
  return job ? { id: job.id, status: job.status } : null;
}

/**
 * The Thread's files a message may take to the agent: files added through `POST /threads/{threadId}/files`
 * (or uploaded to the session through /v1), not stored by a message itself. Mosoo's quickstart adds a file
 * "when the Agent needs input from a document", then sends a message that carries no file handle, so the
 * next message of the Thread takes them. Which message that is the session decides as it records it
 * (SendMessage's `once_files`): of concurrent messages, exactly one.
 */
function threadFiles(ctx: AppContext, row: SessionRow): string[] {
  return listSessionFiles(ctx.db, row.id, "attachment", 1000).filter((f) => f.message_id === null && f.status === "uploaded").map((f) => f.id);
}

const fileAttachments = (ids: readonly string[]) => [...new Set(ids)].map((file_id) => ({ type: "file" as const, file_id }));

function decodeBase64(value: string): Uint8Array {
  // The doc accepts "Base64-encoded file bytes, or a data URL".
  const data = value.startsWith("data:") ? value.slice(value.indexOf(",") + 1) : value;
  if (!/^[A-Za-z0-9+/\s]*={0,2}\s*$/.test(data)) throw new ValidationError("contentBase64 is not base64", { param: "contentBase64" });
  return Buffer.from(data, "base64");
}

type ResponseSet = { status?: number | string; headers: Record<string, string | number> };

/** Applies one planned step of a send-events batch; the run it touched, as Mosoo shows it (null for none). */
async function applyStep(
  ctx: AppContext, request: Request, set: ResponseSet, row: SessionRow, step: Step, meta: ReturnType<typeof metaOf>, resumed: boolean,
  files: readonly string[] = [],
): Promise<ReturnType<typeof runView> | null> {
  switch (step.kind) {
    case "message": {
      // A message sent while a run is in flight waits its turn (Mosoo has no busy answer for it).
      // The Thread's files no message has carried yet go with the first of the batch's messages the session records.
      const a = await acceptMessage(ctx, request, row, {
        content: step.text, attachments: [], once_files: fileAttachments(files), model: null, context: null, multitask: "enqueue",
      },
        { message_id: step.message_id, job_id: step.job_id }, resumed);
      await afterWrite(ctx, { set, request }, a.position);
      return runView(getJob(ctx.db, ctx.appId, a.job_id), { id: a.job_id, at: Date.now() });
    }
    case "decision": {
      const position = step.allow ? await approvePlan(ctx, step.jobId, meta) : await rejectPlan(ctx, step.jobId, step.reason, meta);
      await afterWrite(ctx, { set, request }, position);
      return runView(getJob(ctx.db, ctx.appId, step.jobId));
    }
    case "interrupt": {
      const r = await cancelJob(ctx, step.jobId, step.reason, meta);
      await afterWrite(ctx, { set, request }, r.position);
      return runView(getJob(ctx.db, ctx.appId, step.jobId), { id: step.jobId, at: Date.now() });
    }
    case "noop":
      return null;
    default: {
      const _: never = step;
      return _;
    }
  }
}

export const mosooRoutes = (deps: MosooDeps) =>
  new Elysia({ name: "agentry.compat.mosoo", prefix: `${MOSOO_PREFIX}/api/v1`, detail: { tags: ["Mosoo (compat)"] } })
    .resolve(async ({ request, set }) => {
      const ctx = await admitCompat(deps.ctx, deps, request, set.headers);
      refuseKeyUserIds(ctx.actingUser ?? principalOf(request)?.userId ?? null);
      return { ctx };
    })
    .post("/agents/:agentId/threads", ({ ctx, params, body, request, set }) => create(ctx, request, body, set, { session: "sess", message: "msg", job: "job" }, async ({ ids, resumed }) => {
      const agentId = await agentOf(ctx, params.agentId, request.signal);
      const principal = principalOf(request)!;
      // attributed_user_id projects the work onto one of the app's end users: the Thread is theirs (their
      // history, their limits, erased with them); an end-user token may only name itself.
      refuseKeyUserIds(null, body.attributed_user_id);
      const userId = body.attributed_user_id ?? mosooUser(principal);
      requireUser(ctx, userId);
      // Checked before anything is written: a content part we cannot take refuses the whole request.
      const text = contentText(body.input.content);
      const meta = metaOf(ctx, request, userId);
      let row: SessionRow;
      if (body.client_external_ref) {
        // A ref names one Thread within whom the Thread is for: an end user's refs (sent with their
        // token, or by a key with attributed_user_id) are theirs alone, and the app's keys acting for no
        // user share one namespace of their own. So an end user cannot claim a ref the backend will use
        // for someone else's work, and a key reaches a user's Thread only by naming that user. Created on
        // first use, continued after; another app's ref is another Thread.
        const forUser = principal.userId !== null || body.attributed_user_id !== undefined;
        row = (await sessionForClientId(ctx, {
          surface: "mosoo", clientId: body.client_external_ref, agentId, userId, scope: forUser ? "user" : "app",
        }, meta, request.signal)).row;
        if (row.agent_id !== agentId) throw new ConflictError("agent_mismatch", "This client_external_ref names a Thread of another Agent", { param: "client_external_ref" });
        // The Thread must be the caller's to write into: a user's own, or (for keys) one of the keys'.
        // An app-wide ref whose Thread belongs to an end user (started before refs were scoped) is not
        // written into without naming that user.
        if (row.user_id !== userId && (forUser || !row.user_id.startsWith("mosoo-"))) {
          throw new ConflictError("client_external_ref_in_use", "This client_external_ref names a Thread of an end user: send attributed_user_id to write to it", { param: "client_external_ref" });
        }
      } else {
        const id = ids.session!;
        const exists = resumed && (await ctx.repos.sessions.load(id)).state.status !== "none";
        if (!exists) {
          const r = await ctx.repos.sessions.handle(id, {
            type: "StartSession", session_id: id, agent_id: agentId, user_id: userId, name: text.slice(0, 80),
            external_ref: null, metadata: { surface: "mosoo" },
          }, meta);
          await readYourWrites(ctx, r.position, request.signal);
        }
        row = getSession(ctx.db, ctx.appId, id) ?? requireThread(ctx, id);
      }
      // The files named in `files`, and those added to the Thread that no message has carried yet (a continued ref).
      const accepted = await acceptMessage(ctx, request, row, {
        content: text, attachments: fileAttachments((body.files ?? []).map((f) => f.file_id)), once_files: fileAttachments(threadFiles(ctx, row)),
        model: null, context: null, multitask: "enqueue",
      }, { message_id: ids.message!, job_id: ids.job! }, resumed);
      await afterWrite(ctx, { set, request }, accepted.position);
      const fresh = getSession(ctx.db, ctx.appId, row.id) ?? row;
      return {
        status: 201,
        body: {
          thread: threadView(fresh, accepted.job_id),
          run: runView(getJob(ctx.db, ctx.appId, accepted.job_id), { id: accepted.job_id, at: Date.now() }),
          links: { thread: `${MOSOO_PREFIX}/api/v1/threads/${row.id}` },
        },
      };
    }), {
      params: AgentParams, body: CreateThreadBody,
      detail: { summary: "Create a Thread and its first run (Mosoo)", description: "Idempotency-Key makes a retry return the original answer; client_external_ref names a Thread, created on first use." },
    })
    .get("/agents/:agentId/threads", async ({ ctx, params, query, request }) => {
      const agentId = await agentOf(ctx, params.agentId, request.signal);
      const limit = query.limit ?? 100;
      // Newest created first, keyset-paged: an order that never changes, so a walk sees every Thread once.
      const after = decodeCursor(query.cursor, { s: "integer", id: "string" });
      const rows = listSessions(ctx.db, ctx.appId, {
        agent_ids: [agentId], archived: query.archived ?? false, ...(ctx.actingUser ? { user_id: ctx.actingUser } : {}),
      }, "created", limit + 1, after ? { seq: after.s, id: after.id } : undefined);
      const hasMore = rows.length > limit;
      const shown = hasMore ? rows.slice(0, limit) : rows;
      const last = shown[shown.length - 1];
      return {
        threads: shown.map((r) => threadView(r, latestJob(ctx, r.id)?.id ?? null)),
        has_more: hasMore, next_cursor: hasMore && last ? encodeCursor({ s: last.created_seq, id: last.id }) : null,
      };
    }, {
      params: AgentParams,
      query: t.Object({
        archived: t.Optional(t.Boolean()),
        limit: t.Optional(t.Integer({ minimum: 1, maximum: 100, description: "Page size (1–100, default 100)" })),
        cursor: t.Optional(t.String({ maxLength: 512, description: "next_cursor of the previous page" })),
      }),
      detail: {
        summary: "List Threads of a published Agent (Mosoo)",
        description: "Newest first, `limit` (default and most 100) a page; `has_more` and `next_cursor` (pass back as `cursor`) page through the rest. archived=true lists archived ones.",
      },
    })
    .get("/threads/:threadId", ({ ctx, params }) => {
      const row = requireThread(ctx, params.threadId);
      const latest = latestJob(ctx, row.id);
      // The run in flight (one waiting for a permission decision included), not a message queued behind
      // it; once nothing is in flight, the latest run.
      const run = currentJob(ctx, row) ?? latest;
      return { thread: threadView(row, latest?.id ?? null), run: run ? runView(run) : null, links: { thread: `${MOSOO_PREFIX}/api/v1/threads/${row.id}` } };
    }, { params: ThreadParams, detail: { summary: "Retrieve a Thread summary (Mosoo)" } })
    .post("/threads/:threadId/events", ({ ctx, params, body, request, set }) => create(ctx, request, body, set, { message: "msg", job: "job" }, async ({ ids, resumed }) => {
      const row = requireThread(ctx, params.threadId);
      const meta = metaOf(ctx, request, row.user_id);
      // The whole batch is decided before any of it is written: a refusal leaves the Thread as it was.
      const steps = planBatch(sentEventsOf(body), {
        current: currentRun(ctx, row), runOf: (id) => runOfThread(ctx, row, id), resumed,
        idsOf: (n) => ({ message_id: n === 0 ? ids.message! : `${ids.message!}_${n}`, job_id: n === 0 ? ids.job! : `${ids.job!}_${n}` }),
      });
      for (const step of steps) {
        if (step.kind === "message") await precheckMessage(ctx, row.id, { content: step.text, attachments: [], model: null, context: null, multitask: "enqueue" }, step, resumed);
      }
      // Every turn the batch starts is a heavy call's worth of work: the call itself paid for one, the
      // rest are charged now, before anything is written (429 refuses the whole batch, as any refusal).
      const turns = steps.filter((s) => s.kind === "message").length;
      await spendHeavy(request, turns - 1, set.headers);
      const accepted: Array<{ clientRequestId: string | null; run: ReturnType<typeof runView> | null }> = [];
      const warnings: Array<{ code: string; message: string }> = [];
      let wrote = false;
      const files = steps.some((s) => s.kind === "message") ? threadFiles(ctx, row) : [];
      for (const [i, step] of steps.entries()) {
        try {
          const run = await applyStep(ctx, request, set, row, step, meta, resumed, files);
          if (step.kind === "noop") warnings.push(step.warning);
          else wrote = true;
          accepted.push({ clientRequestId: step.clientRequestId, run });
        } catch (err) {
          // Nothing written yet: the refusal is the answer (and frees the Idempotency-Key). A failure of ours
          // (5xx) leaves the key claimed: its retry takes over with the same ids and finds what was written.
          // A refusal once part of the batch is written answers 202 with what was applied and a warning for
          // the rest, recorded under the key like any answer, so a retry replays it rather than applying twice.
          const { status, body: failure } = toErrorResponse(err);
          if (!wrote || status >= 500) throw err;
          warnings.push({ code: failure.error.code, message: `Event ${i} was not applied: ${failure.error.message}` });
          for (const rest of steps.slice(i)) accepted.push({ clientRequestId: rest.clientRequestId, run: null });
          if (steps.length > i + 1) warnings.push({ code: "not_applied", message: `Events ${i + 1}–${steps.length - 1} were not applied` });
          break;
        }
      }
      const fresh = getSession(ctx.db, ctx.appId, row.id) ?? row;
      return { status: 202, body: { acceptedAt: new Date().toISOString(), events: accepted, thread: threadView(fresh, latestJob(ctx, row.id)?.id ?? null), warnings } };
    }), {
      params: ThreadParams, body: SendEventsBody,
      detail: {
        summary: "Send user messages, permission decisions or interrupts to a Thread (Mosoo)",
        description: "The batch is checked whole (every event's shape, every run it names and that run's state) before any of it is applied. `{\"input\": {…}}` sends one user.message.",
      },
    })
    .get("/threads/:threadId/events", async ({ ctx, params, query }) => {
      const row = requireThread(ctx, params.threadId);
      const limit = query.limit ?? 100;
      return query.after === undefined ? await latestLog(ctx, row, limit) : await logAfter(ctx, row, query.after, limit);
    }, {
      params: ThreadParams,
      query: t.Object({
        limit: t.Optional(t.Integer({ minimum: 1, maximum: 1000 })),
        after: t.Optional(t.String({ minLength: 1, maxLength: 40, description: "An event id of this log (next_after of the previous read, or 0): the events after it" })),
      }),
      detail: {
        summary: "List a Thread's public event log (Mosoo)",
        description: "Without `after`: the latest `limit` (default 100, 1–1000) events, oldest first; `truncated` when older ones were left out. "
          + "With `after` (an event id, or 0 for the start): the events after it, oldest first, at most `limit`; `has_more` when more follow. "
          + "Every answer's `next_after` is the `after` of the next poll; an `after` the log never gave is 400 invalid_cursor. The runs' tool steps (tool.started, tool.completed) are placed where they happened.",
      },
    })
    .post("/threads/:threadId/files", async ({ ctx, params, body, request, set }) => {
      const row = requireThread(ctx, params.threadId);
      const contentType = acceptedContentType(filesOf(ctx).settings, body.contentType);
      const bytes = decodeBase64(body.contentBase64);
      const fileId = newResourceId("file");
      const { position } = await storeFile(ctx, {
        owner: { file_id: fileId, session_id: row.id, user_id: row.user_id, agent_id: row.agent_id },
        chunks: (async function* () { yield bytes; })(), name: body.name, content_type: contentType, role: "attachment", source: "message", param: "contentBase64",
      }, metaOf(ctx, request, row.user_id));
      await afterWrite(ctx, { set, request }, position);
      const file = getFile(ctx.db, ctx.appId, fileId);
      set.status = 201;
      return { file: file ? fileView(file) : { id: fileId, name: body.name, mimeType: contentType, size: bytes.byteLength, kind: "attachment", committed: true, createdAt: new Date().toISOString() } };
    }, { params: ThreadParams, body: AddFileBody, detail: { summary: "Add a file to a Thread (Mosoo)" } })
    .get("/threads/:threadId/files", ({ ctx, params }) => {
      const row = requireThread(ctx, params.threadId);
      return { files: listSessionFiles(ctx.db, row.id, null, 1000).map(fileView) };
    }, { params: ThreadParams, detail: { summary: "List a Thread's files: attachments and artifacts (Mosoo)" } })
    .delete("/threads/:threadId/files/:fileId", async ({ ctx, params, request, set }) => {
      const row = requireThread(ctx, params.threadId);
      const file = getFile(ctx.db, ctx.appId, params.fileId);
      if (!file || file.session_id !== row.id) throw new NotFoundError("File not found in this Thread", { param: "fileId" }, "file_not_found");
      await afterWrite(ctx, { set, request }, await removeFile(ctx, file.id, metaOf(ctx, request, row.user_id)));
      return { ok: true };
    }, {
      params: t.Object({ threadId: ThreadParams.properties.threadId, fileId: t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" }) }),
      detail: { summary: "Remove a file from a Thread (Mosoo)" },
    })
    .post("/threads/:threadId/archive", async ({ ctx, params, request, set }) => {
      const row = requireThread(ctx, params.threadId);
      const r = await ctx.repos.sessions.handle(row.id, { type: "ArchiveSession" }, metaOf(ctx, request, row.user_id));
      await afterWrite(ctx, { set, request }, r.position);
      return { ok: true };
    }, { params: ThreadParams, detail: { summary: "Archive a Thread (hidden from the default list) (Mosoo)" } })
    .post("/threads/:threadId/unarchive", async ({ ctx, params, request, set }) => {
      const row = requireThread(ctx, params.threadId);
      const r = await ctx.repos.sessions.handle(row.id, { type: "UnarchiveSession" }, metaOf(ctx, request, row.user_id));
      await afterWrite(ctx, { set, request }, r.position);
      return { ok: true };
    }, { params: ThreadParams, detail: { summary: "Unarchive a Thread (Mosoo)" } })
    .delete("/threads/:threadId", async ({ ctx, params, request, set }) => {
      await deleteSession(ctx, { set, request }, requireThread(ctx, params.threadId));
      return { ok: true };
    }, { params: ThreadParams, detail: { summary: "Delete a Thread (gone from lists and reads; its events stay auditable) (Mosoo)" } });
