/**
 * The Mushu-compatible surface, mounted at `/compat/mushu`: Mushu Agents' data plane (single-turn runs,
 * multi-turn conversations polled by `pending_id`), its health check and the BYOS status check, over
 * our runs, sessions, jobs and end-user credentials (the management plane is management.ts). A Mushu client changes only its base URL and key (an Agentry API key, sent as `X-API-Key`). A
 * run is a job (`job_id` is ours), a conversation a session (`conv_id` is ours), a `pending_id` the job
 * of the turn: all readable through `/v1`. A workflow runs on its own agent (src/compat/mushu/workflows.ts),
 * or on the key's agent when the key is limited to agents. Choices where the doc is silent are recorded
 * in docs/compat.md.
 */
import { Elysia, t } from "elysia";
import type { AppContext } from "../../app/context.ts";
import { requireAgentAllowed, requireUser } from "../../app/access.ts";
import { visibleJobRow, visibleRunRow } from "../../app/jobReads.ts";
import { startRun } from "../../app/turns.ts";
import { NotFoundError, ValidationError } from "../../core/errors.ts";
import { credentialStatus } from "../../domain/credential/credential.ts";
import { userCredentialsId } from "../../domain/streams.ts";
import { newResourceId } from "../../core/ids.ts";
import { afterWrite, create, metaOf } from "../../http/routes/v1/common.ts";
import { acceptMessage, deleteSession, requireSession, sessionAfterWrite } from "../../http/routes/v1/sessions/service.ts";
import { decodeCursor, encodeCursor } from "../../http/pagination.ts";
import { listSessions } from "../../../projections/sessions/index.ts";
import { listMessages } from "../../../projections/messages/index.ts";
import { listSessionJobs } from "../../../projections/jobs/index.ts";
import { admitCompat, type CompatAccess } from "../shared/compatAccess.ts";
import { ensureWorkflowAgent } from "./workflows.ts";
import { CallbackBody, ConnectBody, ConversationBody, conversationSummary, conversationView, MessageBody, MUSHU_PREFIX, MUSHU_PUBLIC_PATHS, pollView, RunBody, runView } from "./wire.ts";
import { completeConnect, OPENAI_CHATGPT_CLIENT, startConnect, type ChatGptOAuthClient } from "./chatgptConnect.ts";
import { requestIdOf } from "../../http/requestGuard.ts";
import { principalOf } from "../../http/auth.ts";

export interface MushuDeps extends CompatAccess {
  ctx: AppContext;
  /** The OAuth client of the BYOS connect flow (OpenAI's public ChatGPT client unless configured). */
  chatgpt?: ChatGptOAuthClient;
}

/**
 * The agent a Mushu workflow runs on: the key's (first) agent when it is limited to agents, else the
 * workflow's own agent. A workflow that is neither built in nor set up by the app's managers is a
 * refused field (422, as FastAPI refuses a value outside an enum), not a new agent.
 */
async function workflowAgent(ctx: AppContext, workflow: string, signal: AbortSignal): Promise<string> {
  const agentId = ctx.allowedAgents?.[0] ?? (await ensureWorkflowAgent(ctx, workflow, "built_in", signal).catch((err) => {
    if (err instanceof NotFoundError) throw new ValidationError(err.message, { param: "workflow", location: "body" }, "unknown_workflow");
    throw err;
  }));
  requireAgentAllowed(ctx, agentId);
  return agentId;
}

/** A run's result is structured JSON (the doc's "photo in, structured JSON out"): an object, whatever the workflow. */
const RUN_RESULT = { type: "object" };

/** The end user a BYOS call is about: the user of an end-user token (or of a key bound to a user), else the one named. */
function endUser(ctx: AppContext, named: string | undefined): string {
  const userId = named ?? ctx.actingUser;
  if (!userId) throw new ValidationError("Name the end user: user_id", { param: "user_id" });
  requireUser(ctx, userId);
  return userId;
}

const lastJob = (ctx: AppContext, sessionId: string) => listSessionJobs(ctx.db, sessionId, 1)[0] ?? null;

/** The whole history, oldest first (the doc's conversation read has no paging). */
const history = (ctx: AppContext, sessionId: string) => listMessages(ctx.db, sessionId, 10_000);

const ConvParam = t.Object({ conv_id: t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" }) });

export const mushuRoutes = (deps: MushuDeps) =>
  new Elysia({ name: "agentry.compat.mushu", prefix: MUSHU_PREFIX, detail: { tags: ["Mushu (compat)"] } })
    // The health check takes no key, with or without a trailing slash (the router serves both).
    .resolve(async ({ request, set }) => ({
      ctx: (MUSHU_PUBLIC_PATHS as readonly string[]).includes(new URL(request.url).pathname.replace(/\/$/, "")) ? deps.ctx : await admitCompat(deps.ctx, deps, request, set.headers),
    }))
    .get("/health", () => ({ status: "ok" }), { detail: { summary: "Service health check (no key)", security: [] } })
    .post("/runs", ({ ctx, body, request, set }) => create(ctx, request, body, set, { job: "run" }, async ({ ids }) => {
      requireUser(ctx, body.user_id);
      const agentId = await workflowAgent(ctx, body.workflow, request.signal);
      const accepted = await startRun(ctx, {
        agent_id: agentId, user_id: body.user_id, media_url: body.media_url, output_schema: RUN_RESULT, model: null,
        // The workflow is the task; the media is attached to the run as the doc's media_url.
        input: `Workflow: ${body.workflow}. Analyse the media at ${body.media_url} and answer with the result as JSON.`,
      }, metaOf(ctx, request, body.user_id), ids.job!);
      await afterWrite(ctx, { set, request }, accepted.position);
      return { status: 200, body: { job_id: accepted.job_id } };
    }), {
      body: RunBody,
      detail: { summary: "Create a single-turn agent run", description: "Answers {job_id}; poll GET /runs/{job_id} until status is complete or failed. Idempotency-Key honoured." },
    })
    .get("/runs/:job_id", ({ ctx, params }) => runView(visibleRunRow(ctx, params.job_id)), {
      params: t.Object({ job_id: t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" }) }),
      detail: { summary: "Poll run status and result", description: "status: pending, running, complete (result), failed (error)." },
    })
    .post("/conversations", ({ ctx, body, request, set }) => create(ctx, request, body, set, { session: "sess" }, async ({ ids, resumed }) => {
      requireUser(ctx, body.user_id);
      const agentId = await workflowAgent(ctx, body.workflow, request.signal);
      const id = ids.session!;
      const exists = resumed && (await ctx.repos.sessions.load(id)).state.status !== "none";
      if (!exists) {
        const r = await ctx.repos.sessions.handle(id, {
          type: "StartSession", session_id: id, agent_id: agentId, user_id: body.user_id, name: body.workflow, external_ref: null,
          metadata: { surface: "mushu", workflow: body.workflow },
        }, metaOf(ctx, request, body.user_id));
        await sessionAfterWrite(ctx, { set, request }, id, r.position);
      }
      return { status: 200, body: { conv_id: id } };
    }), {
      body: ConversationBody,
      detail: { summary: "Create a multi-turn conversation", description: "Answers {conv_id}: a session of ours, readable through /v1/sessions/{conv_id}." },
    })
    .get("/conversations", ({ ctx, query }) => {
      requireUser(ctx, query.user_id);
      const limit = query.limit ?? 50;
      const after = decodeCursor(query.cursor, { seq: "integer", id: "string" });
      const rows = listSessions(ctx.db, ctx.appId, { user_id: query.user_id, ...(ctx.allowedAgents ? { agent_ids: ctx.allowedAgents } : {}) }, "created", limit + 1, after);
      const hasMore = rows.length > limit;
      const shown = hasMore ? rows.slice(0, limit) : rows;
      const last = shown.at(-1);
      return {
        conversations: shown.map((r) => conversationSummary(r, lastJob(ctx, r.id))),
        has_more: hasMore, next_cursor: hasMore && last ? encodeCursor({ seq: last.created_seq, id: last.id }) : null,
      };
    }, {
      query: t.Object({
        user_id: t.String({ minLength: 1, maxLength: 200 }),
        limit: t.Optional(t.Integer({ minimum: 1, maximum: 200, default: 50 })),
        cursor: t.Optional(t.String({ maxLength: 512, description: "next_cursor of the previous page" })),
      }),
      detail: { summary: "List conversations for a user", description: "Newest first; page with limit and cursor (next_cursor)." },
    })
    .get("/conversations/:conv_id", ({ ctx, params }) => {
      const row = requireSession(ctx, params.conv_id);
      return conversationView(row, lastJob(ctx, row.id), history(ctx, row.id));
    }, { params: ConvParam, detail: { summary: "Get conversation with full message history" } })
    .post("/conversations/:conv_id/messages", async ({ ctx, params, body, request, set }) => {
      const row = requireSession(ctx, params.conv_id);
      const ids = { message_id: newResourceId("msg"), job_id: newResourceId("job") };
      // The doc's concurrent message guard: a message while a turn is in flight is 409 conversation_busy.
      const accepted = await acceptMessage(ctx, request, row, { content: body.content, attachments: [], model: null, context: null, multitask: "reject" }, ids);
      await afterWrite(ctx, { set, request }, accepted.position);
      return { pending_id: accepted.job_id, status: "pending" as const };
    }, { params: ConvParam, body: MessageBody, detail: { summary: "Send a user message, get pending_id", description: "409 {detail: {error: conversation_busy, active_pending_id}} while a turn is in flight." } })
    .get("/conversations/:conv_id/poll/:pending_id", ({ ctx, params }) => {
      const row = requireSession(ctx, params.conv_id);
      const job = visibleJobRow(ctx, params.pending_id);
      if (job.session_id !== row.id) throw new NotFoundError("No such pending message in this conversation", { param: "pending_id" }, "pending_not_found");
      return pollView(job);
    }, {
      params: t.Object({ conv_id: ConvParam.properties.conv_id, pending_id: t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" }) }),
      detail: { summary: "Poll for assistant reply", description: "{status: pending|running} until {status: complete, result_text, structured_result} or {status: failed, error}." },
    })
    .delete("/conversations/:conv_id", async ({ ctx, params, request, set }) => {
      const row = requireSession(ctx, params.conv_id);
      await deleteSession(ctx, { set, request }, row);
      return { conv_id: row.id, deleted: true };
    }, { params: ConvParam, detail: { summary: "Delete a conversation", description: "As DELETE /v1/sessions/{id}: gone from reads; its events stay auditable." } })
    .post("/chatgpt/connect", async ({ ctx, body, request }) =>
      startConnect(ctx, deps.chatgpt ?? OPENAI_CHATGPT_CLIENT, endUser(ctx, body?.user_id), principalOf(request)?.keyId ?? null), {
      body: t.Optional(ConnectBody),
      detail: {
        summary: "Get OAuth authorize URL + session_id",
        description: "Step 1 of connecting an end user's ChatGPT subscription: open auth_url in a web view, intercept the redirect to the redirect URI, and send it to POST /chatgpt/callback with session_id (valid 10 minutes).",
      },
    })
    .post("/chatgpt/callback", async ({ ctx, body, request }) => ({
      connected: true as const, ...(await completeConnect(ctx, deps.chatgpt ?? OPENAI_CHATGPT_CLIENT, body, requestIdOf(request) ?? undefined)),
    }), {
      body: CallbackBody,
      detail: {
        summary: "Complete OAuth exchange after WKWebView intercept", security: [],
        description: "No key: the session_id from /chatgpt/connect is the credential. Exchanges the redirect's code and stores the tokens as the user's OpenAI credential; answers {connected: true}.",
      },
    })
    .get("/chatgpt/status", async ({ ctx, query }) => {
      const userId = endUser(ctx, query.user_id);
      const { state } = await ctx.repos.credentials.load(userCredentialsId(ctx.appId, userId));
      const credential = state.credentials.openai;
      const status = credentialStatus(credential, Date.now());
      return { user_id: userId, connected: status === "connected", expired: status === "expired", expires_at: credential?.expires_at ? new Date(credential.expires_at).toISOString() : null };
    }, {
      query: t.Object({ user_id: t.Optional(t.String({ minLength: 1, maxLength: 200 })) }),
      detail: { summary: "Check ChatGPT connection state", description: "The end user's OpenAI credential (PUT /v1/users/{user_id}/credentials/openai): {connected, expired}." },
    });
