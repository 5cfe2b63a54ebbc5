/**
 * Files on the data plane: upload to a session (multipart, streamed to the blob store), a session's
 * files (attachments and artifacts), one file with a signed download URL, removal, and signed upload
 * URLs (`POST /v1/uploads`) a client PUTs bytes to without an API key (see ../../signedFiles.ts).
 */
import { Elysia, t } from "elysia";
import { requireAgentAllowed, requireUser } from "../../../../app/access.ts";
import type { AppContext } from "../../../../app/context.ts";
import {
  acceptedContentType, contentTypeOfName, discardStaged, fileName, filesOf, loadFile, recordFile, removeFile, stageBytes,
} from "../../../../app/files.ts";
import { NotFoundError, ValidationError } from "../../../../core/errors.ts";
import { newResourceId } from "../../../../core/ids.ts";
import type { StagedBlob } from "../../../../blobs/port.ts";
import { getFile, listSessionFiles, type FileRow } from "../../../../../projections/files/index.ts";
import { boundaryOf, multipartParts } from "../../../multipart.ts";
import { decodeCursor, page, PageQuery } from "../../../pagination.ts";
import { streamedBody, type StreamedBodyRoute } from "../../../requestGuard.ts";
import { afterWrite, callerContext, create, IdParam, metaOf, type HttpExchange, type V1Deps } from "../common.ts";
import { v1Models } from "../models.ts";
import { requireSession } from "../sessions/service.ts";
import { sessionDeleted } from "../../../../../projections/sessions/index.ts";
import { FileDetail, FileModel, fileView, rowOfState, UploadTicket } from "./model.ts";

export const fileModels = new Elysia({ name: "agentry.v1.files.models" }).model({
  File: FileModel, FileDetail, FileList: t.Object({ data: t.Array(FileModel), has_more: t.Boolean(), next_cursor: t.Union([t.String(), t.Null()]) }),
  FileDeleted: t.Object({ id: t.String(), object: t.Literal("file"), deleted: t.Literal(true) }), UploadTicket,
});

const SESSION_FILES = /^\/v1\/sessions\/[^/]+\/files$/;
/** Multipart framing around the file: its headers, the boundaries, a short name field. */
const MULTIPART_OVERHEAD = 64 * 1024;

/** The upload routes' bodies, streamed rather than parsed as JSON (see requestGuard.ts). */
export function fileBodyRoutes(settings: { maxBytes: number }, bodyTimeoutMs: number): StreamedBodyRoute[] {
  const totalTimeoutMs = Math.max(60_000, bodyTimeoutMs * 30);
  return [
    { method: "POST", path: SESSION_FILES, contentTypes: ["multipart/form-data"], maxBytes: settings.maxBytes + MULTIPART_OVERHEAD, totalTimeoutMs },
    { method: "PUT", path: /^\/uploads\/[^/]+$/, contentTypes: "any", maxBytes: settings.maxBytes, totalTimeoutMs },
  ];
}

/**
 * The file's read-model row, if the caller may see it; 404 file_not_found otherwise (a file of a
 * deleted session included: it goes with its session), 403 for another end user's or agent's.
 */
export function requireFile(ctx: AppContext, fileId: string): FileRow {
  const row = getFile(ctx.db, ctx.appId, fileId);
  if (!row || (row.session_id !== null && sessionDeleted(ctx.db, row.session_id))) throw new NotFoundError("File not found", { param: "file_id" }, "file_not_found");
  if (row.agent_id) requireAgentAllowed(ctx, row.agent_id);
  requireUser(ctx, row.user_id);
  return row;
}

/** Where signed URLs point: PUBLIC_BASE_URL, or the origin the request came to. */
const baseOf = (ctx: AppContext, request: Request) => filesOf(ctx).settings.publicBaseUrl ?? new URL(request.url).origin;

/** A file as GET shows it: with a signed download URL once its bytes are there. */
export function fileDetail(ctx: AppContext, request: Request, row: FileRow) {
  const files = filesOf(ctx);
  const signed = row.status === "uploaded" ? files.urls.url(baseOf(ctx, request), "download", row.id, files.settings.signedUrlTtlS) : null;
  return { ...fileView(row), download_url: signed?.url ?? null, download_expires_at: signed ? new Date(signed.expiresAt).toISOString() : null };
}

/** After a file write: the read model's row once it has the write, else the row its events make. */
async function fileAfterWrite(ctx: AppContext, http: HttpExchange, fileId: string, position: bigint | null): Promise<FileRow> {
  const fresh = await afterWrite(ctx, http, position);
  const row = fresh ? getFile(ctx.db, ctx.appId, fileId) : null;
  if (row) return row;
  const loaded = await loadFile(ctx, fileId);
  if (!loaded || loaded.appId !== ctx.appId || loaded.state.status === "removed") throw new NotFoundError("File not found", { param: "file_id" }, "file_not_found");
  return rowOfState(loaded.state, ctx.appId, Date.now());
}

const NAME = t.String({ minLength: 1, maxLength: 255, pattern: "^[^\\x00-\\x1f\\x7f/\\\\]+$" });

export const fileRoutes = (deps: V1Deps) =>
  new Elysia({ name: "agentry.v1.files", detail: { tags: ["Files"] } })
    .use(v1Models)
    .use(fileModels)
    .use(callerContext(deps))
    .post("/v1/sessions/:session_id/files", async ({ ctx, params, request, set }) => {
      const session = requireSession(ctx, params.session_id);
      const files = filesOf(ctx);
      const parts = multipartParts(streamedBody(request), boundaryOf(request.headers.get("content-type")), { maxParts: 4, maxHeaderBytes: 8192 });
      let staged: StagedBlob | null = null;
      let filePart: { filename: string | null; contentType: string } | null = null;
      let name: string | null = null;
      try {
        for await (const part of parts) {
          if (part.name === "file") {
            if (staged) throw new ValidationError("Send one file per request (one 'file' part)", { param: "file" });
            // The type is checked before anything is stored: a refused type costs no write.
            const declared = part.contentType && part.contentType !== "application/octet-stream" ? part.contentType : contentTypeOfName(part.filename) ?? part.contentType;
            filePart = { filename: part.filename, contentType: acceptedContentType(files.settings, declared) };
            staged = await stageBytes(ctx, part.body);
          } else if (part.name === "name") {
            const chunks: Uint8Array[] = [];
            let size = 0;
            for await (const c of part.body) {
              size += c.byteLength;
              if (size > 1024) throw new ValidationError("Invalid name: at most 255 characters", { param: "name" });
              chunks.push(c);
            }
            name = fileName(Buffer.concat(chunks).toString("utf8"), "name", { lastSegment: true });
          } else {
            throw new ValidationError(`Unknown form field '${part.name.slice(0, 100)}': send 'file' and optionally 'name'`, { param: part.name.slice(0, 100) });
          }
        }
        if (!staged || !filePart) throw new ValidationError("The form has no 'file' part", { param: "file" });
        const fileId = newResourceId("file");
        const { position } = await recordFile(ctx, staged, {
          owner: { file_id: fileId, session_id: params.session_id, user_id: session.user_id, agent_id: session.agent_id },
          name: name ?? fileName(filePart.filename ?? "upload", "file", { lastSegment: true }), content_type: filePart.contentType,
          role: "attachment", source: "multipart",
        }, metaOf(ctx, request, session.user_id));
        staged = null; // recorded (or released by recordFile on failure)
        set.status = 201;
        return fileDetail(ctx, request, await fileAfterWrite(ctx, { set, request }, fileId, position));
      } catch (err) {
        if (staged) await discardStaged(ctx, staged).catch(() => {});
        throw err;
      }
    }, {
      params: IdParam("session_id"),
      response: { 201: "FileDetail" },
      detail: {
        summary: "Upload a file to a session (multipart/form-data: 'file', optional 'name')",
        description: "The file is an attachment: the agent reads it when a message names it. At most MAX_FILE_BYTES; its type must be on the allow-list (415 otherwise).",
        requestBody: {
          required: true,
          content: { "multipart/form-data": { schema: { type: "object", required: ["file"], properties: { file: { type: "string", format: "binary" }, name: { type: "string", maxLength: 255 } } } } },
        },
      },
    })
    .get("/v1/sessions/:session_id/files", ({ ctx, params, query }) => {
      requireSession(ctx, params.session_id);
      const limit = query.limit ?? 50;
      const after = decodeCursor(query.cursor, { seq: "integer" });
      return page(listSessionFiles(ctx.db, params.session_id, query.role ?? null, limit + 1, after?.seq ?? 0), limit, fileView, (r) => ({ seq: r.seq }));
    }, {
      params: IdParam("session_id"),
      query: t.Object({ ...PageQuery, role: t.Optional(t.Union([t.Literal("attachment"), t.Literal("artifact")], { description: "attachment: given to the agent; artifact: made by it" })) }),
      response: "FileList",
      detail: { summary: "A session's files, oldest first: attachments and artifacts (role=)" },
    })
    .get("/v1/files/:file_id", ({ ctx, params, request }) => fileDetail(ctx, request, requireFile(ctx, params.file_id)), {
      params: IdParam("file_id"), response: "FileDetail",
      detail: { summary: "A file's metadata, with a signed download URL that expires (SIGNED_URL_TTL_S)" },
    })
    .delete("/v1/files/:file_id", async ({ ctx, params, request, set }) => {
      const row = requireFile(ctx, params.file_id);
      const position = await removeFile(ctx, params.file_id, metaOf(ctx, request, row.user_id ?? undefined));
      await afterWrite(ctx, { set, request }, position);
      return { id: params.file_id, object: "file" as const, deleted: true as const };
    }, {
      params: IdParam("file_id"), response: "FileDeleted",
      detail: { summary: "Remove a file: its URLs stop working; its bytes are deleted once no other file has the same content" },
    })
    .post("/v1/uploads", ({ ctx, body, request, set }) => create(ctx, request, body, set, { file: "file" }, async ({ ids, resumed }) => {
      const files = filesOf(ctx);
      const session = body.session_id !== undefined ? requireSession(ctx, body.session_id) : null;
      // Without a session the file is the caller's end user's (if it acts as one), else the app's.
      const userId = session?.user_id ?? ctx.actingUser ?? null;
      const contentType = acceptedContentType(files.settings, body.content_type);
      if (body.size !== undefined && body.size > files.settings.maxBytes) {
        throw new ValidationError(`size is over the limit of ${files.settings.maxBytes} bytes`, { param: "size", max_bytes: files.settings.maxBytes });
      }
      const fileId = ids.file!;
      const meta = metaOf(ctx, request, userId ?? undefined);
      const signed = files.urls.url(baseOf(ctx, request), "upload", fileId, files.settings.signedUrlTtlS, meta.now);
      // A retry taking over this request finds the authorization its first execution wrote (and signs it again).
      const existing = resumed ? await loadFile(ctx, fileId) : null;
      const expiresAt = existing?.state.expiresAt ?? signed.expiresAt;
      const position = existing ? null : (await ctx.repos.files.handle(fileId, {
        type: "AuthorizeUpload", file_id: fileId, session_id: session?.id ?? null, user_id: userId, agent_id: session?.agent_id ?? null,
        name: fileName(body.name, "name"), content_type: contentType, size: body.size ?? null, expires_at: expiresAt,
      }, meta)).position;
      await afterWrite(ctx, { set, request }, position);
      const url = existing ? files.urls.url(baseOf(ctx, request), "upload", fileId, Math.max(1, Math.ceil((expiresAt - Date.now()) / 1000))).url : signed.url;
      return {
        status: 201,
        body: {
          object: "upload" as const, file_id: fileId, upload_url: url, method: "PUT" as const, expires_at: new Date(expiresAt).toISOString(),
          content_type: contentType, max_bytes: body.size ?? files.settings.maxBytes,
        },
      };
    }), {
      body: t.Object({
        session_id: t.Optional(t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" })),
        name: NAME,
        content_type: t.String({ minLength: 3, maxLength: 255 }),
        size: t.Optional(t.Integer({ minimum: 0, description: "The exact size in bytes, when known: the upload must be exactly this long" })),
      }),
      response: { 201: "UploadTicket" },
      detail: { summary: "Get a signed URL to PUT a file's bytes to without an API key (once, before it expires)" },
    });
