/**
 * The MUAPI-compatible surface, mounted at `/compat/muapi`: the Design Agent's API (sessions, assets,
 * chat and run-skill as jobs polled by cursor, plan approval, cancel, skills, history) under
 * `/compat/muapi/api/v1/creative-agent`, and the dashboard's upload URL under `/compat/muapi/api/app`.
 * A MUAPI client changes only its base URL and key (an Agentry API key, sent as `x-api-key`). A session
 * is our session, a job our job, an asset our asset (labelled by the session's events), a skill our
 * skill: all readable through `/v1`. Uploads (uploads.ts) are our files. Choices where the doc is
 * silent are recorded in docs/compat.md.
 */
import { Elysia, t } from "elysia";
import type { AppContext } from "../../app/context.ts";
import { requireUser } from "../../app/access.ts";
import { keyUserId } from "../../app/keyUsers.ts";
import { agentOrDefault } from "../../app/defaultAgent.ts";
import { visibleJob, visibleJobState } from "../../app/jobReads.ts";
import { skillsOf, type ShippedSkill } from "../../app/skills.ts";
import { approvePlan, cancelJob, rejectPlan, type MessageInput } from "../../app/turns.ts";
import { TERMINAL } from "../../domain/job/job.ts";
import type { SessionEvent } from "../../domain/session/session.ts";
import { jobStream } from "../../domain/streams.ts";
import { toPublicEvent } from "../../http/eventView.ts";
import { principalOf } from "../../http/auth.ts";
import { afterWrite, create, metaOf, type ResponseSet } from "../../http/routes/v1/common.ts";
import { pollStream } from "../../http/routes/v1/cursorEvents.ts";
import { acceptMessage, deleteSession, registeredAsset, requireSession } from "../../http/routes/v1/sessions/service.ts";
import { listSessions, type SessionRow } from "../../../projections/sessions/index.ts";
import { listAssets, type AssetRow } from "../../../projections/assets/index.ts";
import { listMessages } from "../../../projections/messages/index.ts";
import { listSessionJobs } from "../../../projections/jobs/index.ts";
import { admitCompat, type CompatAccess } from "../shared/compatAccess.ts";
import { claimForSession, fileDownloadUrl, receiveUpload, requireAttachable, uploadedFileOf, uploadTicket } from "./uploads.ts";
import { NotFoundError, ValidationError } from "../../core/errors.ts";
import { clientHistoryDigest } from "../../domain/session/clientHistory.ts";
import {
  AssetBody, assetView, ChatBody, HistoryBody, isSkillName, jobError, jobStatus, jobSummary, kindOfType, messagesView, MUAPI_PREFIX, MUAPI_UPLOAD_PATH, muapiEvent,
  RenameBody, RunSkillBody, SessionBody, sessionView, skillView, type MuapiEvent,
} from "./wire.ts";

export interface MuapiDeps extends CompatAccess {
  ctx: AppContext;
  /** The skills shipped with the server (SKILLS_DIR), by name. */
  skills?: ReadonlyMap<string, ShippedSkill>;
}

const AGENT = "/api/v1/creative-agent";
const Id = t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" });
const SessionParam = t.Object({ session_id: Id });
const JobParam = t.Object({ job_id: Id });

/** The user a key's MUAPI sessions belong to: the end user of an end-user token, else one per key (the doc's key is one user's). */
function muapiUser(request: Request): string {
  const principal = principalOf(request);
  return principal?.userId ?? (principal ? keyUserId("muapi", principal.keyId) : "muapi");
}

/** Every asset of a session, oldest first (the doc's list has no paging; a session's assets are few). */
const allAssets = (ctx: AppContext, sessionId: string): AssetRow[] => listAssets(ctx.db, sessionId, 10_000, 0);

/**
 * The doc's `messages_snapshot` ("Persisted atomically"): recorded with the message, in the same
 * write, as PATCH /messages records a saved history — its count and digest, not a second copy
 * (the message's `client_data.client_history`; the model is never shown it).
 */
const snapshotRecord = (snapshot: unknown[] | undefined) => (snapshot ? { client_data: { client_history: { ...clientHistoryDigest(snapshot) } } } : {});

/**
 * Chat and run-skill alike: the message (with the client's snapshot recorded), a job queued behind any
 * in flight (MUAPI enqueues every job), answered at once with the doc's `{job_id, status: "pending"}`.
 * Idempotency-Key honoured.
 */
function submitJob(
  ctx: AppContext, request: Request, set: ResponseSet, row: SessionRow, body: { messages_snapshot?: unknown[] }, message: MessageInput,
) {
  return create(ctx, request, body, set, { message_id: "msg", job_id: "job" }, async ({ ids, resumed }) => {
    const accepted = await acceptMessage(ctx, request, row, { ...message, ...snapshotRecord(body.messages_snapshot) }, { message_id: ids.message_id!, job_id: ids.job_id! }, resumed);
    await afterWrite(ctx, { set, request }, accepted.position);
    return { status: 200, body: { job_id: accepted.job_id, status: "pending" as const } };
  });
}

export const muapiRoutes = (deps: MuapiDeps) => {
  const shipped = deps.skills ?? new Map<string, ShippedSkill>();
  return new Elysia({ name: "agentry.compat.muapi", prefix: MUAPI_PREFIX, detail: { tags: ["MUAPI (compat)"] } })
    // The upload POST takes no key (its signed policy is the credential), as S3 takes none.
    .resolve(async ({ request, set }) => ({ ctx: new URL(request.url).pathname === MUAPI_UPLOAD_PATH ? deps.ctx : await admitCompat(deps.ctx, deps, request, set.headers) }))
    .get("/api/app/get_file_upload_url", ({ ctx, query, request, set }) => uploadTicket(ctx, request, set, query.filename), {
      query: t.Object({ filename: t.String({ minLength: 1, maxLength: 255 }) }),
      detail: { summary: "A signed upload: {url, fields}; POST the fields, then the file, as multipart/form-data to url", description: "The file is then at https://cdn.muapi.ai/<fields.key> for POST /sessions/{id}/assets." },
    })
    .post("/uploads", ({ request, set }) => receiveUpload(deps.ctx, request, set), {
      detail: {
        summary: "Receive an upload (the doc's direct-to-S3 POST): the fields get_file_upload_url gave, then 'file'", security: [],
        description: "No key: the signed policy in the fields is the credential. 204 when stored; 403 for a wrong or expired signature; 400 when used twice.",
        requestBody: { required: true, content: { "multipart/form-data": { schema: { type: "object", required: ["key", "policy", "signature", "file"], properties: { key: { type: "string" }, AWSAccessKeyId: { type: "string" }, policy: { type: "string" }, signature: { type: "string" }, file: { type: "string", format: "binary" } } } } } },
      },
    })
    .get(`${AGENT}/sessions`, ({ ctx, query }) => {
      // The caller's sessions: an end user's own; a server key's app's (one store: /v1's sessions too).
      const rows = listSessions(ctx.db, ctx.appId, {
        archived: false, ...(ctx.actingUser ? { user_id: ctx.actingUser } : {}), ...(ctx.allowedAgents ? { agent_ids: ctx.allowedAgents } : {}),
      }, "activity", query.limit ?? 100);
      return rows.map(sessionView);
    }, {
      query: t.Object({ limit: t.Optional(t.Integer({ minimum: 1, maximum: 1000, default: 100, description: "Most recently updated first; at most this many (ours: the doc shows no paging)" })) }),
      detail: { summary: "List sessions, most recently updated first" },
    })
    .post(`${AGENT}/sessions`, ({ ctx, body, request, set }) => create(ctx, request, body ?? {}, set, { session: "sess" }, async ({ ids, resumed }) => {
      const userId = muapiUser(request);
      requireUser(ctx, userId);
      const agentId = ctx.allowedAgents?.[0] ?? (await agentOrDefault(ctx, undefined, request.signal));
      const id = ids.session!;
      // The doc: "If name is omitted, a random name like session-a1b2c3 is generated."
      const name = body?.name ?? `session-${id.slice(-6)}`;
      const exists = resumed && (await ctx.repos.sessions.load(id)).state.status !== "none";
      if (!exists) {
        const r = await ctx.repos.sessions.handle(id, {
          type: "StartSession", session_id: id, agent_id: agentId, user_id: userId, name, external_ref: null, metadata: { surface: "muapi" },
        }, metaOf(ctx, request, userId));
        await afterWrite(ctx, { set, request }, r.position);
      }
      return { status: 200, body: { id, name, credits_spent: 0, asset_count: 0 } };
    }), { body: t.Optional(SessionBody), detail: { summary: "Create a session", description: "Idempotency-Key honoured." } })
    .patch(`${AGENT}/sessions/:session_id`, async ({ ctx, params, body, request, set }) => {
      const row = requireSession(ctx, params.session_id);
      const r = await ctx.repos.sessions.handle(row.id, { type: "RenameSession", name: body.name }, metaOf(ctx, request, row.user_id));
      await afterWrite(ctx, { set, request }, r.position);
      return { id: row.id, name: body.name };
    }, { params: SessionParam, body: RenameBody, detail: { summary: "Rename a session" } })
    .delete(`${AGENT}/sessions/:session_id`, async ({ ctx, params, request, set }) => {
      await deleteSession(ctx, { set, request }, requireSession(ctx, params.session_id));
      return { status: "deleted" as const };
    }, { params: SessionParam, detail: { summary: "Delete a session", description: "As DELETE /v1/sessions/{id}: its jobs stop, its files go, it leaves every read; its events stay auditable." } })
    .get(`${AGENT}/sessions/:session_id/assets`, ({ ctx, params, request }) => {
      requireSession(ctx, params.session_id);
      return allAssets(ctx, params.session_id).map((a) => assetView(a, (f) => fileDownloadUrl(ctx, request, f)));
    }, { params: SessionParam, detail: { summary: "List a session's assets, oldest first" } })
    .post(`${AGENT}/sessions/:session_id/assets`, ({ ctx, params, body, request, set }) => create(ctx, request, body, set, { asset: "ast" }, async ({ ids, resumed }) => {
      const row = requireSession(ctx, params.session_id);
      // An upload's CDN URL (or one of our file URLs) names a stored file: the asset is that file.
      const named = uploadedFileOf(ctx, request, body.url);
      const file = named?.file ?? null;
      if (file) requireAttachable(file, row);
      const fileId = file?.id ?? null;
      // Doc: "422 Invalid field value (e.g., unsupported kind)": a PNG is not a video.
      if (file && kindOfType(file.content_type) !== body.kind) {
        throw new ValidationError(`The file at this url is ${file.content_type}, not ${body.kind === "audio" ? "audio" : `a ${body.kind}`}`, { param: "kind" });
      }
      let label = resumed ? (await registeredAsset(ctx, row.id, ids.asset!))?.asset_label : undefined;
      if (!label) {
        // An upload (the doc's flow) becomes this session's, to go with it; a file stored otherwise is only named.
        if (file && named!.upload) await claimForSession(ctx, { set, request }, file, row);
        const r = await ctx.repos.sessions.handle(row.id, {
          type: "RegisterAsset", asset_id: ids.asset!, url: fileId ? null : body.url, file_id: fileId, kind: body.kind,
          source_tool: body.source_tool ?? "upload", prompt: body.prompt ?? null, model: null, job_id: null,
        }, metaOf(ctx, request, row.user_id));
        label = (r.appended[0] as Extract<SessionEvent, { type: "AssetRegistered" }>).data.asset_label;
        await afterWrite(ctx, { set, request }, r.position);
      }
      // A file's URL is one that serves it (as GET /assets gives, signed for SIGNED_URL_TTL_S); any other is kept as given.
      const url = fileId ? fileDownloadUrl(ctx, request, fileId) : body.url;
      return { status: 200, body: { asset_label: label, kind: body.kind, url, source_tool: body.source_tool ?? "upload" } };
    }), {
      params: SessionParam, body: AssetBody,
      detail: {
        summary: "Register an asset; its label asset_N is numbered atomically per session",
        description: "https://cdn.muapi.ai/<fields.key> of an upload registers the stored file, which becomes the session's (deleted with it; 400 when another session holds it); its kind must match the file's type (422). The answer's url serves the file for SIGNED_URL_TTL_S; GET /assets signs a fresh one. Idempotency-Key honoured.",
      },
    })
    .get(`${AGENT}/sessions/:session_id/messages`, ({ ctx, params, request }) => {
      requireSession(ctx, params.session_id);
      const skills = new Map(listSessionJobs(ctx.db, params.session_id, 10_000).map((j) => [j.id, (JSON.parse(j.input) as { skill?: { name?: string } }).skill?.name ?? null]));
      const assets = new Map(allAssets(ctx, params.session_id).map((a) => [a.asset_label, assetView(a, (f) => fileDownloadUrl(ctx, request, f))]));
      return messagesView(listMessages(ctx.db, params.session_id, 100_000), (job) => skills.get(job) ?? null, (label) => assets.get(label) ?? null);
    }, { params: SessionParam, detail: { summary: "The session's whole chat history, oldest first" } })
    .patch(`${AGENT}/sessions/:session_id/messages`, async ({ ctx, params, body, request, set }) => {
      const row = requireSession(ctx, params.session_id);
      // The history is already durable (every message and step is an event): what the client saved is
      // recorded beside it for auditors (its count and digest, not a second copy), and overwrites nothing.
      const r = await ctx.repos.sessions.handle(row.id, { type: "SaveClientHistory", ...clientHistoryDigest(body.messages) }, metaOf(ctx, request, row.user_id));
      await afterWrite(ctx, { set, request }, r.position);
      return { status: "saved" as const, count: body.messages.length };
    }, {
      params: SessionParam, body: HistoryBody,
      detail: { summary: "Save the client's copy of the history", description: "Recorded as an event (history.client_saved: {count, sha256, bytes} of the messages' canonical JSON); GET /messages keeps answering the session's own history." },
    })
    .post(`${AGENT}/sessions/:session_id/chat`, async ({ ctx, params, body, request, set }) => {
      const row = requireSession(ctx, params.session_id);
      // The canvas goes to the model as the turn's context.
      return submitJob(ctx, request, set, row, body, {
        content: body.message, attachments: [], model: null, context: body.canvas_state ? { canvas_state: body.canvas_state } : null, multitask: "enqueue",
      });
    }, {
      params: SessionParam, body: ChatBody,
      detail: { summary: "Send a message: a job, polled at GET /jobs/{job_id}/events", description: "Answers {job_id, status: pending} at once. A message while a job runs is queued behind it." },
    })
    .post(`${AGENT}/sessions/:session_id/run-skill`, async ({ ctx, params, body, request, set }) => {
      const row = requireSession(ctx, params.session_id);
      // Doc: "404 Session, job, asset, or skill not found": a name no skill could have is one of them.
      if (!isSkillName(body.skill_name)) throw new NotFoundError("Skill not found", { param: "skill_name" }, "skill_not_found");
      return submitJob(ctx, request, set, row, body, {
        content: "", attachments: [], model: null, context: null, multitask: "enqueue", skill: { name: body.skill_name, inputs: body.inputs ?? {}, shipped },
      });
    }, {
      params: SessionParam, body: RunSkillBody,
      detail: { summary: "Run a skill: a job given the skill's recipe with the inputs filled in", description: "404 for an unknown skill; 422 for an unknown or missing input." },
    })
    .get(`${AGENT}/agent-skills`, async ({ ctx }) => (await skillsOf(ctx, shipped)).map(skillView), {
      detail: { summary: "The skills the app can run: shipped (*.skill.md) and the app's own" },
    })
    .get(`${AGENT}/sessions/:session_id/jobs`, ({ ctx, params }) => {
      requireSession(ctx, params.session_id);
      return listSessionJobs(ctx.db, params.session_id, 20).map(jobSummary);
    }, { params: SessionParam, detail: { summary: "The session's 20 most recent jobs, newest first" } })
    .get(`${AGENT}/jobs/:job_id/events`, async ({ ctx, params, query, request }) => {
      // 404 (or 403) before anything is read.
      await visibleJobState(ctx, params.job_id);
      // Events first, then the state: the status answered is never older than the events.
      const { raw, cursor } = await pollStream(ctx, jobStream(params.job_id), { since: query.since ?? 0, limit: query.limit ?? 200, wait: 0 }, request);
      const { state, lastEventId } = await visibleJob(ctx, params.job_id);
      // Done once the client has the terminal event and what follows from it (the reply in the history) is there to read.
      const done = TERMINAL.has(state.status as never) && cursor >= lastEventId
        && (ctx.turns.isSettled(params.job_id) || (await ctx.turns.turnSettled(params.job_id, metaOf(ctx, request), request.signal)));
      const events = raw.map((e) => muapiEvent(toPublicEvent(e), params.job_id, (f) => fileDownloadUrl(ctx, request, f))).filter((e): e is MuapiEvent => e !== null);
      return {
        job_id: params.job_id, status: jobStatus(state.status), error: jobError(state.status, state.error, state.cancelReason),
        approved: state.planDecision === null ? null : state.planDecision === "approved", approval_requested: state.status === "awaiting_approval",
        cursor, events, done,
      };
    }, {
      params: JobParam,
      query: t.Object({
        since: t.Optional(t.Integer({ minimum: 0, default: 0, description: "Return only events with id > since" })),
        limit: t.Optional(t.Integer({ minimum: 1, maximum: 1000, default: 200 })),
      }),
      detail: { summary: "Poll a job's events after a cursor", description: "Ids are our job event cursor ids (those of /v1/jobs/{id}/events); ours with no MUAPI type are skipped. Poll with since=cursor until done." },
    })
    .post(`${AGENT}/jobs/:job_id/approve`, async ({ ctx, params, request, set }) => {
      const job = await visibleJobState(ctx, params.job_id);
      await afterWrite(ctx, { set, request }, await approvePlan(ctx, params.job_id, metaOf(ctx, request, job.queued?.user_id)));
      return { status: "approved" as const };
    }, { params: JobParam, detail: { summary: "Approve the plan a job is waiting on" } })
    .post(`${AGENT}/jobs/:job_id/reject`, async ({ ctx, params, request, set }) => {
      const job = await visibleJobState(ctx, params.job_id);
      await afterWrite(ctx, { set, request }, await rejectPlan(ctx, params.job_id, null, metaOf(ctx, request, job.queued?.user_id)));
      return { status: "rejected" as const };
    }, { params: JobParam, detail: { summary: "Reject the plan: nothing of it runs, and the job ends" } })
    .post(`${AGENT}/jobs/:job_id/cancel`, async ({ ctx, params, request, set }) => {
      const job = await visibleJobState(ctx, params.job_id);
      const r = await cancelJob(ctx, params.job_id, null, metaOf(ctx, request, job.queued?.user_id));
      await afterWrite(ctx, { set, request }, r.position);
      // A running job stops within one step (before its next tool call): the doc's "cancelled" either way.
      return { status: "cancelled" as const };
    }, { params: JobParam, detail: { summary: "Cancel a job", description: "The worker stops before its next tool call; an in-flight model request is aborted." } });
};
