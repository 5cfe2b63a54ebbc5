/** The file routes' response models and row views. */
import { t } from "elysia";
import type { FileState } from "../../../../domain/file/file.ts";
import type { FileRow } from "../../../../../projections/files/index.ts";
import { iso } from "../common.ts";

const Nullable = <T extends import("@sinclair/typebox").TSchema>(schema: T) => t.Union([schema, t.Null()]);

export const FileModel = t.Object({
  id: t.String(), object: t.Literal("file"),
  session_id: Nullable(t.String()), user_id: Nullable(t.String()),
  name: t.String(), content_type: t.String(),
  size: Nullable(t.Integer({ description: "Bytes; for a pending signed upload, the size it declared (or null)" })),
  sha256: Nullable(t.String({ description: "SHA-256 (hex) of the content; null until uploaded" })),
  role: t.Union([t.Literal("attachment"), t.Literal("artifact")], { description: "attachment: given to the agent; artifact: made by the agent" }),
  source: t.String({ description: "multipart, signed_url, message (an inline attachment) or tool" }),
  status: t.Union([t.Literal("pending"), t.Literal("uploaded")], { description: "pending: a signed upload URL was issued and not used yet" }),
  message_id: Nullable(t.String()), job_id: Nullable(t.String()),
  created_at: t.String(), uploaded_at: Nullable(t.String()),
  upload_expires_at: Nullable(t.String({ description: "For a signed upload: when its URL stops working" })),
});

/** One file with a signed, expiring download URL (null while pending). */
export const FileDetail = t.Object({
  ...FileModel.properties,
  download_url: Nullable(t.String({ description: "GET it without an API key until download_expires_at" })),
  download_expires_at: Nullable(t.String()),
});

export const UploadTicket = t.Object({
  object: t.Literal("upload"), file_id: t.String(),
  upload_url: t.String({ description: "PUT the bytes here, without an API key, once, before expires_at" }),
  method: t.Literal("PUT"), expires_at: t.String(), content_type: t.String(),
  max_bytes: t.Integer({ description: "The most bytes the upload may hold (its declared size, when given)" }),
});

export const fileView = (r: FileRow) => ({
  id: r.id, object: "file" as const, session_id: r.session_id, user_id: r.user_id, name: r.name, content_type: r.content_type,
  size: r.size, sha256: r.sha256, role: r.role, source: r.source, status: r.status, message_id: r.message_id, job_id: r.job_id,
  created_at: iso(r.created_at)!, uploaded_at: iso(r.uploaded_at), upload_expires_at: r.status === "pending" ? iso(r.expires_at) : null,
});

/** The row a file's events make, built from its state (for answers given while the read model lags). */
export function rowOfState(s: FileState, appId: string, now: number): FileRow {
  return {
    id: s.fileId!, app_id: appId, session_id: s.sessionId, user_id: s.userId, agent_id: s.agentId, name: s.name, content_type: s.contentType,
    size: s.size, sha256: s.sha256, role: s.role, source: s.source ?? "multipart", status: s.status === "uploaded" ? "uploaded" : "pending",
    message_id: s.messageId, job_id: s.jobId, expires_at: s.expiresAt, created_at: now, uploaded_at: s.status === "uploaded" ? now : null, seq: 0,
  };
}
