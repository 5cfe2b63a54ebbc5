/**
 * The MUAPI Design Agent wire format (seed 004), as pure translations: request bodies, the views its
 * client reads (sessions, assets, messages, jobs, job events), job status words, and its error body
 * `{"detail": "…"}` with the statuses of the doc's error table. Nothing here does I/O: the routes
 * (index.ts) call our services and hand what they get to these functions.
 */
import { t } from "elysia";
import type { SessionRow } from "../../../projections/sessions/index.ts";
import type { AssetRow } from "../../../projections/assets/index.ts";
import type { JobRow } from "../../../projections/jobs/index.ts";
import type { MessageRow } from "../../../projections/messages/index.ts";
import type { ErrorBody, ErrorDialect } from "../../http/errors.ts";
import type { PublicEvent } from "../../http/eventView.ts";
import type { ResolvedSkill } from "../../app/skills.ts";
import { SKILL_NAME_PATTERN } from "../../domain/skill/markdown.ts";
import { paramOf } from "../shared/errors.ts";

/** Where the surface is mounted: the doc's base URL `…/api/v1/creative-agent` is `/compat/muapi/api/v1/creative-agent`. */
export const MUAPI_PREFIX = "/compat/muapi";
export const MUAPI_AGENT_BASE = `${MUAPI_PREFIX}/api/v1/creative-agent`;
/** The dashboard's upload-URL endpoint (the doc's "separate prefix" `/api/app`). */
export const MUAPI_APP_BASE = `${MUAPI_PREFIX}/api/app`;
/**
 * Where a client POSTs an upload (the doc's "Upload Directly to S3"): no key, as S3 takes none; the
 * signed policy in the form's fields is the credential.
 */
export const MUAPI_UPLOAD_PATH = `${MUAPI_PREFIX}/uploads`;
/** The CDN host the doc's client builds asset URLs on: `https://cdn.muapi.ai/<fields.key>`. */
export const MUAPI_CDN = "https://cdn.muapi.ai/";
/** The keys of our uploads: `uploads/<file_id>/<filename>`, so a CDN URL names the stored file. */
export const uploadKey = (fileId: string, filename: string): string => `uploads/${fileId}/${filename}`;

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
const json = <T = unknown>(s: string | null): T | null => (s === null ? null : (JSON.parse(s) as T));

const Kind = t.Union([t.Literal("image"), t.Literal("video"), t.Literal("audio")], { description: '"image" | "video" | "audio"' });
const Name = t.String({ minLength: 1, maxLength: 200 });
/** A message snapshot entry: the doc shows {role, content, timestamp, events?, attachments?}; kept as sent. */
const SnapshotMessage = t.Record(t.String(), t.Unknown());
const PlannerModel = t.String({ minLength: 1, maxLength: 200, description: "The doc's planner LLM (default gpt-5-mini); accepted, the session's agent plans (docs/compat.md)" });

export const SessionBody = t.Object({ name: t.Optional(Name) });
export const RenameBody = t.Object({ name: Name });
export const AssetBody = t.Object({
  url: t.String({ pattern: "^https?://", maxLength: 4096, description: "Public URL of the file, or https://cdn.muapi.ai/<fields.key> of an upload" }),
  kind: Kind,
  source_tool: t.Optional(t.String({ minLength: 1, maxLength: 100, default: "upload" })),
  prompt: t.Optional(t.String({ maxLength: 10_000 })),
});
export const HistoryBody = t.Object({ messages: t.Array(SnapshotMessage, { maxItems: 10_000 }) });
export const ChatBody = t.Object({
  message: t.String({ minLength: 1, maxLength: 100_000 }),
  model: t.Optional(PlannerModel),
  messages_snapshot: t.Optional(t.Array(SnapshotMessage, { maxItems: 10_000 })),
  canvas_state: t.Optional(t.Record(t.String(), t.Unknown())),
});
export const RunSkillBody = t.Object({
  // Any string: a name that is no skill's, slug or not, is the doc's 404 "skill not found" (isSkillName).
  skill_name: t.String({ description: "Exact slug name of the skill (see GET /agent-skills)" }),
  inputs: t.Optional(t.Record(t.String(), t.Union([t.String({ maxLength: 10_000 }), t.Number(), t.Boolean()]))),
  model: t.Optional(PlannerModel),
  messages_snapshot: t.Optional(t.Array(SnapshotMessage, { maxItems: 10_000 })),
});

const SKILL_NAME = new RegExp(SKILL_NAME_PATTERN);
/** Whether `name` could name a skill at all (its slug form); one that cannot is simply not found. */
export const isSkillName = (name: string): boolean => SKILL_NAME.test(name);

/** A skill run's user message as the history and the job list show it (the run itself sends no text). */
export const skillRunText = (skill: string): string => `Run skill ${skill}`;

export function sessionView(row: SessionRow) {
  return {
    id: row.id, name: row.name, credits_spent: row.credits_spent, asset_count: row.asset_count,
    created_at: iso(row.created_at)!, updated_at: iso(row.last_activity_at)!,
  };
}

/** An AssetObject. `fileUrl` gives a file asset's URL (a signed download URL): the event keeps the file's id, not a URL. */
export function assetView(row: Pick<AssetRow, "asset_label" | "kind" | "url" | "file_id" | "source_tool" | "model" | "prompt" | "created_at">, fileUrl: (fileId: string) => string | null) {
  return {
    asset_label: row.asset_label, kind: row.kind, url: row.url ?? (row.file_id ? fileUrl(row.file_id) : null), source_tool: row.source_tool,
    model: row.model, prompt: row.prompt, created_at: iso(row.created_at)!,
  };
}

/**
 * Our job status in the doc's words (pending, processing, completed, failed). Waiting for approval is
 * `processing` with `approval_requested: true`; a cancelled job (cancel, or a rejected plan) is
 * `failed` with an error saying so, since the doc's status has no fourth end.
 */
export function jobStatus(status: string): "pending" | "processing" | "completed" | "failed" {
  if (status === "pending") return "pending";
  if (status === "processing" || status === "awaiting_approval") return "processing";
  if (status === "completed") return "completed";
  return "failed";
}

/** A job's error as the doc's string (null unless it failed or was cancelled). */
export function jobError(status: string, error: { message?: string } | null | undefined, cancelReason?: string | null): string | null {
  if (status === "failed") return error?.message ?? "The job failed";
  if (status === "cancelled") return `The job was cancelled${cancelReason ? `: ${cancelReason}` : ""}`;
  return null;
}

/** `GET /sessions/{id}/jobs`: one job. */
export function jobSummary(row: JobRow) {
  const input = json<{ content?: string; skill?: { name?: string } }>(row.input);
  return {
    id: row.id, status: jobStatus(row.status),
    user_message: input?.content || (input?.skill?.name ? skillRunText(input.skill.name) : ""),
    error: jobError(row.status, json<{ message?: string }>(row.error)),
    created_at: iso(row.created_at)!, completed_at: iso(row.completed_at),
  };
}

/** The doc's event on the wire: our cursor id, the doc's type, its payload. */
export interface MuapiEvent {
  id: number;
  type: "text" | "info" | "error" | "tool_call" | "tool_result" | "plan_propose" | "canvas_op";
  payload: Record<string, unknown>;
  job_id: string;
  created_at: string;
}

interface ToolAsset { asset_label: string | null; kind: string; url: string | null; file_id: string | null; prompt: string | null }

/**
 * One of our job events (its public view) as the doc's event, or null for ours it has no type for
 * (lifecycle, usage, context): their ids are then skipped, so `since` stays our cursor and a poll
 * resumes with no gap and no duplicate. `fileUrl` gives a file asset's URL.
 */
export function muapiEvent(e: PublicEvent, jobId: string, fileUrl: (fileId: string) => string | null): MuapiEvent | null {
  const p = e.payload as Record<string, any>;
  const out = (type: MuapiEvent["type"], payload: Record<string, unknown>): MuapiEvent => ({ id: e.id, type, payload, job_id: jobId, created_at: e.created_at });
  switch (e.type) {
    case "text":
      return out("text", { content: p.content });
    case "info":
      return out("info", { content: p.content, needs_approval: false });
    case "tool.progress":
      return p.message ? out("info", { content: p.message, needs_approval: false }) : null;
    case "canvas_op":
      return out("canvas_op", { op: p.op, args: p.args });
    case "tool.called":
      return out("tool_call", { name: p.name, args: p.args });
    case "tool.completed": {
      const asset = ((p.assets ?? []) as ToolAsset[])[0];
      return out("tool_result", {
        name: p.name, result: p.result,
        asset: asset ? { asset_label: asset.asset_label, kind: asset.kind, url: asset.url ?? (asset.file_id ? fileUrl(asset.file_id) : null), source_tool: p.name, model: null, prompt: asset.prompt } : null,
        ...(p.error ? { error: p.error } : {}),
      });
    }
    case "plan.proposed":
      return out("plan_propose", {
        title: p.title, plan_id: p.plan_id,
        nodes: (p.steps as Array<{ tool: string; args: any; estimated_credits: number }>).map((s) => ({
          tool: s.tool, model: typeof s.args?.model === "string" ? s.args.model : null, credits: s.estimated_credits, args: s.args,
        })),
        total_credits: p.total_credits,
      });
    case "plan.approved":
      return out("info", { content: "Plan approved", needs_approval: false });
    case "plan.rejected":
      return out("info", { content: `Plan rejected${p.reason ? `: ${p.reason}` : ""}`, needs_approval: false });
    case "job.failed":
      return out("error", { message: p.error?.message ?? "The job failed" });
    case "job.cancelled":
      return out("info", { content: `Cancelled${p.reason ? `: ${p.reason}` : ""}`, needs_approval: false });
    default:
      return null;
  }
}

interface StoredAttachment { type: string; url?: string; asset_label?: string; name?: string; content_type?: string; file_id?: string }
interface ToolCallSummary { name: string; args: unknown; result: unknown; error: string | null }

/**
 * `GET /sessions/{id}/messages`: our history in the doc's shape. A user message carries its
 * attachments and the skill it ran (`skillOf` its job); an assistant message its tool calls and results
 * as `events`, each result with the asset it registered (`assetOf` a label).
 */
export function messagesView(
  rows: MessageRow[], skillOf: (jobId: string) => string | null, assetOf: (label: string) => ReturnType<typeof assetView> | null,
) {
  return rows.map((m) => {
    const timestamp = iso(m.created_at)!;
    if (m.role === "user") {
      const attachments = (json<StoredAttachment[]>(m.attachments) ?? []).map((a) => {
        const asset = a.asset_label ? assetOf(a.asset_label) : null;
        return { asset_label: a.asset_label ?? null, url: a.url ?? asset?.url ?? null, kind: asset?.kind ?? kindOfType(a.content_type) };
      });
      const skill = skillOf(m.job_id);
      return { role: "user" as const, content: m.content || (skill ? skillRunText(skill) : ""), attachments, timestamp, ...(skill ? { skill_name: skill } : {}) };
    }
    const events = (json<ToolCallSummary[]>(m.tool_calls) ?? []).flatMap((c) => {
      const label = (c.result as { asset_label?: unknown } | null)?.asset_label;
      return [
        { type: "tool_call" as const, name: c.name, args: c.args },
        { type: "tool_result" as const, name: c.name, result: c.result, asset: typeof label === "string" ? assetOf(label) : null, ...(c.error ? { error: c.error } : {}) },
      ];
    });
    const error = json<{ message?: string }>(m.error);
    return {
      role: "assistant" as const, content: m.content || (error?.message ?? ""), events, timestamp,
      ...(m.status !== "completed" ? { status: m.status, error: error?.message ?? null } : {}),
    };
  });
}

/** The doc's asset kind of a content type: image, video or audio by its major type, else "file" (none of the doc's). */
export const kindOfType = (type: string | undefined): string => {
  const major = type?.split("/")[0];
  return major === "image" || major === "video" || major === "audio" ? major : "file";
};

/** `GET /agent-skills`: one skill recipe. Ours declare no trigger keywords or credit estimate. */
export function skillView(s: ResolvedSkill) {
  return { name: s.name, description: s.description, inputs: s.inputs.map((i) => i.name), trigger_keywords: [] as string[], estimated_credits: 0 };
}

/**
 * The doc's error table: 400 bad request, 401, 403, 404, 422 invalid field value, 500. Ours outside
 * it are given the table's nearest: a refused field (our 400 `invalid_request`, and 415 an unsupported
 * file type) is 422; a conflict (409: no plan waiting, an upload used twice) and a body too large (413)
 * are 400; gone (410) is 404. 429 and 503 stay: they are the server's, and carry Retry-After.
 */
export function muapiStatus(status: number, body: ErrorBody): number {
  if (body.error.code === "invalid_request" || status === 415) return 422;
  if (status === 409 || status === 413) return 400;
  if (status === 410) return 404;
  return status;
}

/** The doc's own words for what was not found (`{"detail": "Session not found"}`). */
const DOC_DETAILS: Record<string, string> = { session_not_found: "Session not found", job_not_found: "Job not found", skill_not_found: "Skill not found" };

/** FastAPI's `{"detail": "…"}`, as the doc shows; beside it our code, the parameter and the request id, for tracing. */
export function muapiErrorBody(body: ErrorBody) {
  const e = body.error;
  const param = paramOf(body);
  const detail = DOC_DETAILS[e.code] ?? e.message;
  return { detail, code: e.code, ...(param ? { param } : {}), ...(e.request_id ? { request_id: e.request_id } : {}) };
}

export const muapiErrorDialect: ErrorDialect = {
  prefix: MUAPI_PREFIX,
  render: (_status, body) => muapiErrorBody(body),
  statusOf: muapiStatus,
};
