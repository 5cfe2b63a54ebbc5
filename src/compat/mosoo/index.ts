/**
 * The Mosoo-compatible surface, mounted at `/compat/mosoo`: Mosoo's Threads API (`/api/v1/agents/
 * {agentId}/threads`, `/api/v1/threads/{threadId}/…`) over our sessions, turns and files. A Mosoo
 * client changes only its base URL and token (an Agentry API key, sent as `Authorization: Bearer`).
 * A Thread is a session of ours and a Run is one of its jobs, so everything here is readable through
 * `/v1`. `client_external_ref` names a Thread (created on first use: src/compat/shared/clientSessions.ts).
 * Choices where the doc is silent are recorded in docs/compat.md.
 */
import { Elysia, t } from "elysia";
import type { AppContext } from "../../app/context.ts";
import { agentOrDefault } from "../../app/defaultAgent.ts";
import { getAgent } from "../../app/agentReads.ts";
import { requireUser } from "../../app/access.ts";
import { approvePlan, cancelJob, rejectPlan } from "../../app/turns.ts";
import { acceptedContentType, filesOf, removeFile, storeFile } from "../../app/files.ts";
import { readYourWrites } from "../../app/context.ts";
import { ConflictError, NotFoundError, ValidationError } from "../../core/errors.ts";
import { newResourceId } from "../../core/ids.ts";
import { sessionStream } from "../../domain/streams.ts";
import { principalOf } from "../../http/auth.ts";
import { afterWrite, create, metaOf } from "../../http/routes/v1/common.ts";
import { acceptMessage, deleteSession, requireSession } from "../../http/routes/v1/sessions/service.ts";
import { getJob, listSessionJobs, type JobRow } from "../../../projections/jobs/index.ts";
import { getFile, listSessionFiles } from "../../../projections/files/index.ts";
import { getSession, listSessions, type SessionRow } from "../../../projections/sessions/index.ts";
import { admitCompat, type CompatAccess } from "../shared/compatAccess.ts";
import { sessionForClientId } from "../shared/clientSessions.ts";
import {
  AddFileBody, CreateThreadBody, MOSOO_PREFIX, SendEventsBody, fileView, inputText, permissionRequested, runView, threadEvents, threadView,
  type MosooEvent, type MosooSentEvent,
} from "./wire.ts";

export interface MosooDeps extends CompatAccess {
  ctx: AppContext;
}

/** The user a Thread belongs to: the end user of an end-user token, else one per key (a Human PAT is one caller). */
const mosooUser = (principal: { userId: string | null; keyId: string }): string => principal.userId ?? `mosoo-${principal.keyId}`;

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

/** The run a permission decision or interrupt is about: the one named, else the Thread's current one. */
function targetRun(ctx: AppContext, row: SessionRow, runId: string | undefined): JobRow | null {
  if (runId) {
    const job = getJob(ctx.db, ctx.appId, runId);
    if (!job || job.session_id !== row.id) throw new NotFoundError("Run not found in this Thread", { param: "run_id" }, "run_not_found");
    return job;
  }
  const turns = JSON.parse(row.turns) as string[];
  return turns[0] ? getJob(ctx.db, ctx.appId, turns[0]) : null;
}

function decodeBase64(value: string): Uint8Array {
  // The doc accepts "Base64-encoded file bytes, or a data URL".
  const data = value.startsWith("data:") ? value.slice(value.indexOf(",") + 1) : value;
  if (!/^[A-Za-z0-9+/\s]*={0,2}\s*$/.test(data)) throw new ValidationError("contentBase64 is not base64", { param: "contentBase64" });
  return Buffer.from(data, "base64");
}

export const mosooRoutes = (deps: MosooDeps) =>
  new Elysia({ name: "agentry.compat.mosoo", prefix: `${MOSOO_PREFIX}/api/v1`, detail: { tags: ["Mosoo (compat)"] } })
    .resolve(async ({ request, set }) => ({ ctx: await admitCompat(deps.ctx, deps, request, set.headers) }))
    .post("/agents/:agentId/threads", ({ ctx, params, body, request, set }) => create(ctx, request, body, set, { session: "sess", message: "msg", job: "job" }, async ({ ids, resumed }) => {
      const agentId = await agentOf(ctx, params.agentId, request.signal);
      const principal = principalOf(request)!;
      // attributed_user_id projects the work onto one of the app's end users: the Thread is theirs (their
      // history, their limits, erased with them); an end-user token may only name itself.
      const userId = body.attributed_user_id ?? mosooUser(principal);
      requireUser(ctx, userId);
      const meta = metaOf(ctx, request, userId);
      let row: SessionRow;
      if (body.client_external_ref) {
        // The same client_external_ref is the same Thread: created on first use, continued after.
        row = (await sessionForClientId(ctx, { surface: "mosoo", clientId: body.client_external_ref, agentId, userId }, meta, request.signal)).row;
        if (row.agent_id !== agentId || row.user_id !== userId) throw new ConflictError("agent_mismatch", "This client_external_ref names a Thread of another Agent or user", { param: "client_external_ref" });
      } else {
        const id = ids.session!;
        const exists = resumed && (await ctx.repos.sessions.load(id)).state.status !== "none";
        if (!exists) {
          const r = await ctx.repos.sessions.handle(id, {
            type: "StartSession", session_id: id, agent_id: agentId, user_id: userId, name: inputText(body.input).slice(0, 80),
            external_ref: null, metadata: { surface: "mosoo" },
          }, meta);
          await readYourWrites(ctx, r.position, request.signal);
        }
        row = getSession(ctx.db, ctx.appId, id) ?? requireThread(ctx, id);
      }
      const accepted = await acceptMessage(ctx, request, row, {
        content: inputText(body.input), attachments: (body.files ?? []).map((f) => ({ type: "file" as const, file_id: f.file_id })),
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
      const rows = listSessions(ctx.db, ctx.appId, {
        agent_ids: [agentId], archived: query.archived ?? false, ...(ctx.actingUser ? { user_id: ctx.actingUser } : {}),
      }, "created", 100);
      return { threads: rows.map((r) => threadView(r, latestJob(ctx, r.id)?.id ?? null)) };
    }, {
      params: AgentParams, query: t.Object({ archived: t.Optional(t.Boolean()) }),
      detail: { summary: "List Threads of a published Agent (Mosoo)", description: "Newest first, at most 100; archived=true lists archived ones." },
    })
    .get("/threads/:threadId", ({ ctx, params }) => {
      const row = requireThread(ctx, params.threadId);
      const job = latestJob(ctx, row.id);
      return { thread: threadView(row, job?.id ?? null), run: job ? runView(job) : null, links: { thread: `${MOSOO_PREFIX}/api/v1/threads/${row.id}` } };
    }, { params: ThreadParams, detail: { summary: "Retrieve a Thread summary (Mosoo)" } })
    .post("/threads/:threadId/events", ({ ctx, params, body, request, set }) => create(ctx, request, body, set, { message: "msg", job: "job" }, async ({ ids, resumed }) => {
      const row = requireThread(ctx, params.threadId);
      const meta = metaOf(ctx, request, row.user_id);
      const accepted: Array<{ clientRequestId: string | null; run: ReturnType<typeof runView> | null }> = [];
      const warnings: Array<{ code: string; message: string }> = [];
      let messages = 0;
      for (const event of body.events as MosooSentEvent[]) {
        const clientRequestId = event.client_request_id ?? null;
        if (event.type === "user_message") {
          // A message sent while a run is in flight waits its turn (Mosoo has no busy answer for it).
          const n = messages++;
          const message_id = n === 0 ? ids.message! : `${ids.message!}_${n}`;
          const job_id = n === 0 ? ids.job! : `${ids.job!}_${n}`;
          const a = await acceptMessage(ctx, request, row, { content: event.text, attachments: [], model: null, context: null, multitask: "enqueue" }, { message_id, job_id }, resumed);
          await afterWrite(ctx, { set, request }, a.position);
          accepted.push({ clientRequestId, run: runView(getJob(ctx.db, ctx.appId, a.job_id), { id: a.job_id, at: Date.now() }) });
        } else if (event.type === "permission_decision") {
          const job = targetRun(ctx, row, event.run_id);
          if (!job || job.status !== "awaiting_approval") throw new ConflictError("no_pending_permission", "No run of this Thread is waiting for a permission decision", { param: "events" });
          const position = event.decision === "allow" ? await approvePlan(ctx, job.id, meta) : await rejectPlan(ctx, job.id, event.reason ?? null, meta);
          await afterWrite(ctx, { set, request }, position);
          accepted.push({ clientRequestId, run: runView(getJob(ctx.db, ctx.appId, job.id)) });
        } else {
          const job = targetRun(ctx, row, undefined);
          if (!job || ["completed", "failed", "cancelled"].includes(job.status)) {
            warnings.push({ code: "nothing_to_interrupt", message: "No run of this Thread is in flight" });
            accepted.push({ clientRequestId, run: null });
            continue;
          }
          const r = await cancelJob(ctx, job.id, event.reason ?? "user_interrupt", meta);
          await afterWrite(ctx, { set, request }, r.position);
          accepted.push({ clientRequestId, run: runView(getJob(ctx.db, ctx.appId, job.id)) });
        }
      }
      const fresh = getSession(ctx.db, ctx.appId, row.id) ?? row;
      return { status: 202, body: { acceptedAt: new Date().toISOString(), events: accepted, thread: threadView(fresh, latestJob(ctx, row.id)?.id ?? null), warnings } };
    }), {
      params: ThreadParams, body: SendEventsBody,
      detail: { summary: "Send user messages, permission decisions or interrupts to a Thread (Mosoo)" },
    })
    .get("/threads/:threadId/events", async ({ ctx, params, query }) => {
      const row = requireThread(ctx, params.threadId);
      const limit = query.limit ?? 100;
      const jobs = new Map<string, JobRow | null>();
      const jobOf = (id: string) => {
        if (!jobs.has(id)) jobs.set(id, getJob(ctx.db, ctx.appId, id));
        return jobs.get(id)!;
      };
      const all: MosooEvent[] = [];
      for await (const raw of ctx.store.readStream(sessionStream(row.id))) all.push(...threadEvents(raw, jobOf));
      const current = latestJob(ctx, row.id);
      if (current?.status === "awaiting_approval") all.push(permissionRequested(current));
      // The latest `limit` events, oldest first; truncated says older ones were left out.
      return { events: all.slice(Math.max(0, all.length - limit)), truncated: all.length > limit };
    }, {
      params: ThreadParams, query: t.Object({ limit: t.Optional(t.Integer({ minimum: 1, maximum: 1000 })) }),
      detail: { summary: "List a Thread's public event log (Mosoo)", description: "The latest `limit` (default 100, 1–1000) events, oldest first; `truncated` when older ones were left out." },
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
