/**
 * MUAPI's upload flow over our files. `GET /api/app/get_file_upload_url` authorizes a signed upload
 * (as `POST /v1/uploads` does) and answers S3's presigned-POST shape: a `url` and the `fields` to post
 * with the file. The client POSTs them as multipart/form-data to `url`, our keyless upload endpoint,
 * where the signature (the file URL signer's, src/app/fileUrls.ts, over the file id and the expiry the
 * policy carries) is the credential; the bytes are stored as that file. The file's CDN URL
 * `https://cdn.muapi.ai/<fields.key>` — the key names the file id — or one of our own URLs for it,
 * registered as an asset, is that file.
 */
import type { AppContext } from "../../app/context.ts";
import { acceptedContentType, completeSignedUpload, contentTypeOfName, fileName, filesOf, loadFile, sessionGone } from "../../app/files.ts";
import { ForbiddenError, NotFoundError, ValidationError } from "../../core/errors.ts";
import { newResourceId } from "../../core/ids.ts";
import { requireServing } from "../../projections/runner.ts";
import { boundaryOf, multipartParts } from "../../http/multipart.ts";
import { clientRequestId, streamedBody, type StreamedBodyRoute } from "../../http/requestGuard.ts";
import { afterWrite, metaOf, type HttpExchange, type ResponseSet } from "../../http/routes/v1/common.ts";
import { requireFile } from "../../http/routes/v1/files/index.ts";
import { getFile, type FileRow } from "../../../projections/files/index.ts";
import type { SessionRow } from "../../../projections/sessions/index.ts";
import { MUAPI_CDN, MUAPI_UPLOAD_PATH, uploadKey } from "./wire.ts";

/** Where our URLs point: PUBLIC_BASE_URL, or the origin the request came to. */
const baseOf = (ctx: AppContext, request: Request): string => filesOf(ctx).settings.publicBaseUrl ?? new URL(request.url).origin;

const FILE_ID = "file_[A-Za-z0-9]{1,64}";
const KEY = new RegExp(`^uploads/(${FILE_ID})/[^/]{1,255}$`);
const CDN_PATH = new RegExp(`^/uploads/(${FILE_ID})/`);
const OWN_PATH = new RegExp(`^/(?:downloads|v1/files)/(${FILE_ID})(?:\\?.*)?$`);

/** The upload body: a multipart form whose file may be as large as any file, streamed as it arrives. */
export function muapiBodyRoutes(settings: { maxBytes: number }, bodyTimeoutMs: number): StreamedBodyRoute[] {
  return [{
    method: "POST", path: new RegExp(`^${MUAPI_UPLOAD_PATH}$`), contentTypes: ["multipart/form-data"],
    maxBytes: settings.maxBytes + 64 * 1024, totalTimeoutMs: Math.max(60_000, bodyTimeoutMs * 30),
  }];
}

/** `GET /api/app/get_file_upload_url?filename=`: an authorized upload, as S3's presigned POST. */
export async function uploadTicket(ctx: AppContext, request: Request, set: ResponseSet, filename: string) {
  const files = filesOf(ctx);
  const name = fileName(filename, "filename", { lastSegment: true });
  // The type comes from the name (the doc's request carries nothing else); the allow-list applies.
  const contentType = acceptedContentType(files.settings, contentTypeOfName(name));
  const fileId = newResourceId("file");
  const userId = ctx.actingUser ?? null;
  const meta = metaOf(ctx, request, userId ?? undefined);
  const expiresS = Math.floor((meta.now ?? Date.now()) / 1000) + files.settings.signedUrlTtlS;
  const r = await ctx.repos.files.handle(fileId, {
    type: "AuthorizeUpload", file_id: fileId, session_id: null, user_id: userId, agent_id: null, name, content_type: contentType, size: null, expires_at: expiresS * 1000,
  }, meta);
  await afterWrite(ctx, { set, request }, r.position);
  const key = uploadKey(fileId, name);
  const policy = Buffer.from(JSON.stringify({ expiration: new Date(expiresS * 1000).toISOString(), conditions: [{ key }, { "Content-Type": contentType }] })).toString("base64");
  return {
    url: `${baseOf(ctx, request)}${MUAPI_UPLOAD_PATH}`,
    fields: { key, AWSAccessKeyId: "agentry", policy, signature: files.urls.sign("upload", fileId, expiresS) },
  };
}

/** The expiry (epoch seconds, as text) a policy carries; "" when it carries none (the signature check then refuses it). */
function policyExpiry(policy: string | undefined): string {
  try {
    const expiration = (JSON.parse(Buffer.from(policy ?? "", "base64").toString("utf8")) as { expiration?: unknown }).expiration;
    const ms = typeof expiration === "string" ? Date.parse(expiration) : NaN;
    return Number.isFinite(ms) && ms > 0 ? String(Math.floor(ms / 1000)) : "";
  } catch {
    return "";
  }
}

/** The file a form's fields were signed for; 403 `invalid_signature` / `signature_expired` otherwise. */
function signedFileOf(ctx: AppContext, fields: Record<string, string>): string {
  const fileId = KEY.exec(fields.key ?? "")?.[1];
  if (!fileId) throw new ForbiddenError("The upload's key is not one this server signed", "invalid_signature");
  filesOf(ctx).urls.verify("upload", fileId, `?expires=${policyExpiry(fields.policy)}&sig=${fields.signature ?? ""}`);
  return fileId;
}

async function fieldText(body: AsyncIterable<Uint8Array>, name: string): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const c of body) {
    size += c.byteLength;
    if (size > 16 * 1024) throw new ValidationError(`The form field '${name.slice(0, 100)}' is too long`, { param: name.slice(0, 100) });
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * The doc's "POST <url> … [all fields from response, then the file itself]": the fields are read
 * first, the signature checked, and only then the file's bytes stored (once, before the upload expires),
 * as the file the key names. 204 as S3 answers.
 */
export async function receiveUpload(base: AppContext, request: Request, set: ResponseSet): Promise<Response> {
  const parts = multipartParts(streamedBody(request), boundaryOf(request.headers.get("content-type")), { maxParts: 16, maxHeaderBytes: 8192 });
  const fields: Record<string, string> = {};
  let stored = false;
  for await (const part of parts) {
    if (part.name !== "file") {
      fields[part.name] = await fieldText(part.body, part.name);
      continue;
    }
    if (stored) throw new ValidationError("Send one file per upload", { param: "file" });
    const fileId = signedFileOf(base, fields);
    // Before the upload is used up: registering it as an asset reads the files read model.
    requireServing(base.projections, "files");
    const loaded = await loadFile(base, fileId);
    if (!loaded || (await sessionGone(base, loaded.state))) throw new NotFoundError("File not found", { param: "key" }, "file_not_found");
    const appId = loaded.appId ?? base.appId;
    const meta = {
      appId, actor: "signed_url", correlationId: clientRequestId(request) ?? undefined, now: Date.now(),
      ...(loaded.state.userId ? { attributedUserId: loaded.state.userId } : {}),
    };
    const { position } = await completeSignedUpload({ ...base, appId }, fileId, part.body, meta);
    const fresh = position === null || (await base.projections.waitForPosition(position, base.readYourWritesTimeoutMs).then(() => true, () => false));
    if (!fresh) set.headers["x-read-your-writes"] = "pending";
    stored = true;
  }
  if (!stored) throw new ValidationError("The form has no 'file' part (send it last, after the fields)", { param: "file" });
  return new Response(null, { status: 204, headers: set.headers as Record<string, string> });
}

/**
 * The stored file an asset URL names, if it names one: `https://cdn.muapi.ai/uploads/<file_id>/…` (an
 * upload's CDN URL: `upload` true), or our own `<base>/downloads/<file_id>` or `<base>/v1/files/<file_id>`
 * (a file stored otherwise, named by reference). 404 when the caller's app has no such file, 422 when
 * its bytes have not arrived; null for any other URL.
 */
export function uploadedFileOf(ctx: AppContext, request: Request, url: string): { file: FileRow; upload: boolean } | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ValidationError("Invalid url", { param: "url" });
  }
  const base = baseOf(ctx, request);
  let fileId: string | undefined;
  const upload = parsed.origin === new URL(MUAPI_CDN).origin;
  if (upload) fileId = CDN_PATH.exec(parsed.pathname)?.[1];
  else if (url.startsWith(`${base}/`)) fileId = OWN_PATH.exec(url.slice(base.length))?.[1];
  if (!fileId) return null;
  const row = requireFile(ctx, fileId);
  if (row.status !== "uploaded") throw new ValidationError("The file at this url has not been uploaded yet", { param: "url" });
  return { file: row, upload };
}

/**
 * Whether a stored file may be one of this session's assets, by /v1's rule for attaching a file: it
 * belongs to this session or to none, and to the session's user or to none (400 otherwise, naming `url`).
 */
export function requireAttachable(file: FileRow, session: SessionRow): void {
  if (file.user_id !== null && file.user_id !== session.user_id) throw new ValidationError("The file at this url belongs to another user", { param: "url" }, "file_of_another_user");
  if (file.session_id !== null && file.session_id !== session.id) {
    throw new ValidationError("The file at this url belongs to another session; upload it again for this one", { param: "url" }, "file_in_another_session");
  }
}

/**
 * An upload registered as an asset becomes the session's file (the first registration decides), so
 * deleting the session removes it and its URLs stop serving, as the doc's delete says of "all its
 * associated assets". Registering it again in the same session changes nothing; in another session it
 * is refused (409 `file_in_another_session`): one file, one owner, or one session's delete would take
 * another's asset with it.
 */
export async function claimForSession(ctx: AppContext, http: HttpExchange, file: FileRow, session: SessionRow): Promise<void> {
  const r = await ctx.repos.files.handle(file.id, { type: "AssignToSession", session_id: session.id, agent_id: session.agent_id, user_id: session.user_id }, metaOf(ctx, http.request, session.user_id));
  if (r.position !== null) await afterWrite(ctx, http, r.position);
}

/**
 * A file asset's URL: a signed download URL, valid SIGNED_URL_TTL_S from now (each read of the asset
 * signs a fresh one), or null when the file is gone (removed through /v1, or its session's delete):
 * never a URL that would only 404.
 */
export function fileDownloadUrl(ctx: AppContext, request: Request, fileId: string): string | null {
  const files = filesOf(ctx);
  if (getFile(ctx.db, ctx.appId, fileId)?.status !== "uploaded") return null;
  return files.urls.url(baseOf(ctx, request), "download", fileId, files.settings.signedUrlTtlS).url;
}
