/**
 * The signed file URLs, outside /v1 because they take no API key: the signature in the URL is the
 * credential (src/app/fileUrls.ts). `PUT /uploads/{file_id}` stores the bytes of a signed upload
 * (once, before it expires); `GET /downloads/{file_id}` serves a file's bytes. A query not exactly as
 * issued, or a wrong signature, is 403 `invalid_signature`, an expired one 403 `signature_expired`.
 */
import { requireServing } from "../../projections/runner.ts";
import { Elysia, t } from "elysia";
import type { AppContext } from "../../app/context.ts";
import { completeSignedUpload, filesOf, loadFile, openBlob, sessionGone } from "../../app/files.ts";
import { NotFoundError } from "../../core/errors.ts";
import { clientRequestId, streamedBody } from "../requestGuard.ts";
import { fileView, rowOfState } from "./v1/files/model.ts";
import { fileModels } from "./v1/files/index.ts";
import { getFile } from "../../../projections/files/index.ts";

const FileIdParam = t.Object({ file_id: t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" }) });
/**
 * The signed query, for the API document only: it is checked as received, not parsed by a schema, so
 * that any departure from the one form the URL was issued in is 403 rather than 400.
 */
const SIGNED_QUERY_DOC = [
  { name: "expires", in: "query", required: true, schema: { type: "string" as const, pattern: "^[1-9][0-9]{0,11}$" }, description: "Epoch seconds when the URL stops working" },
  { name: "sig", in: "query", required: true, schema: { type: "string" as const, pattern: "^[0-9a-f]{64}$" }, description: "HMAC-SHA256 signature (hex)" },
];
/** The query as received, with its `?` ("" when there is none). */
const searchOf = (request: Request): string => {
  const at = request.url.indexOf("?");
  return at < 0 ? "" : request.url.slice(at);
};

const notFound = () => new NotFoundError("File not found", { param: "file_id" }, "file_not_found");

/** `attachment; filename=…` with an ASCII fallback and the UTF-8 name (RFC 6266). */
function disposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, "_");
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

export const signedFileRoutes = ({ ctx }: { ctx: AppContext }) =>
  new Elysia({ name: "agentry.signed-files", detail: { tags: ["Files"], security: [] } })
    .use(fileModels)
    .put("/uploads/:file_id", async ({ params, request, set }) => {
      filesOf(ctx).urls.verify("upload", params.file_id, searchOf(request));
      // Before the upload is used up: its answer reads the files read model.
      requireServing(ctx.projections, "files");
      const loaded = await loadFile(ctx, params.file_id);
      if (!loaded || (await sessionGone(ctx, loaded.state))) throw notFound();
      const appId = loaded.appId ?? ctx.appId;
      const meta = { appId, actor: "signed_url", correlationId: clientRequestId(request) ?? undefined, now: Date.now(), ...(loaded.state.userId ? { attributedUserId: loaded.state.userId } : {}) };
      const { state, position } = await completeSignedUpload({ ...ctx, appId }, params.file_id, streamedBody(request), meta);
      set.status = 201;
      const fresh = position === null || (await ctx.projections.waitForPosition(position, ctx.readYourWritesTimeoutMs).then(() => true, () => false));
      if (!fresh) set.headers["x-read-your-writes"] = "pending";
      const row = (fresh ? getFile(ctx.db, appId, params.file_id) : null) ?? rowOfState(state, appId, Date.now());
      return fileView(row);
    }, {
      params: FileIdParam, response: { 201: "File" },
      detail: {
        parameters: SIGNED_QUERY_DOC,
        summary: "Upload a file's bytes to a signed upload URL (no API key; once, before it expires)",
        description: "The body is the file's bytes, as is. 403 invalid_signature / signature_expired; 409 upload_already_used on a second PUT; 413 over the declared size or MAX_FILE_BYTES; 400 when fewer bytes arrive than declared.",
        requestBody: { required: true, content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } },
      },
    })
    .get("/downloads/:file_id", async ({ params, request }) => {
      const files = filesOf(ctx);
      files.urls.verify("download", params.file_id, searchOf(request));
      const loaded = await loadFile(ctx, params.file_id);
      if (!loaded || loaded.state.status !== "uploaded" || (await sessionGone(ctx, loaded.state))) throw notFound();
      const blob = await openBlob(ctx, loaded.state.sha256!);
      if (!blob) throw notFound();
      // A local file is sent as is (the runtime streams it from disk); an S3 object as a stream of its body.
      return new Response(files.blobs.kind === "local" ? blob : blob.stream(), {
        headers: {
          "content-type": loaded.state.contentType,
          "content-length": String(loaded.state.size),
          "content-disposition": disposition(loaded.state.name),
          // Served from the API's own origin: never sniffed, never run as a page.
          "x-content-type-options": "nosniff",
          "content-security-policy": "sandbox; default-src 'none'",
          "cache-control": "private, no-store",
        },
      });
    }, {
      params: FileIdParam,
      detail: {
        parameters: SIGNED_QUERY_DOC,
        summary: "Download a file's bytes from a signed download URL (no API key; until it expires)",
        responses: { 200: { description: "The file's bytes, as a download", content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } } },
      },
    });
