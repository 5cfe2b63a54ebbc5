/**
 * Files: their bytes go to the blob store (content-addressed), their records to `file-<id>` streams,
 * and who references which content to `blob-<sha256>` streams. Shared by the file routes, the message
 * route (inline attachments become files), tools that make artifacts, and the turn runner (which reads
 * files for the model).
 *
 * Storing a file: stage the bytes (hashed, bounded) → reference the blob (for this file) → commit the
 * bytes → record the file. Removing one: record the removal → release the blob → when nothing
 * references it any more, collect it: park the bytes, record the collection (refused if a reference
 * arrived meanwhile), then purge them — or put them back. Referencing before committing, and parking
 * before recording, is what keeps a new upload of the same bytes and a collection from losing them.
 */
import type { FilesConfig } from "../config.ts";
import { NotFoundError, PayloadTooLargeError, UnsupportedMediaTypeError, ValidationError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import { fileDecider, type FileCommand, type FileRole, type FileSource, type FileState } from "../domain/file/file.ts";
import { BlobTooLargeError, type BlobStore, type StagedBlob } from "../blobs/port.ts";
import { chunksOf } from "../blobs/staging.ts";
import { contentMatches } from "../domain/file/sniff.ts";
import { newResourceId } from "../core/ids.ts";
import type { AppContext } from "./context.ts";
import type { CommandMetadata } from "./repository.ts";
import { pseudonymousMeta } from "./pseudonym.ts";
import type { FileUrls } from "./fileUrls.ts";

/** What the server needs to store and serve files. */
export interface FileRuntime {
  blobs: BlobStore;
  settings: FilesConfig;
  urls: FileUrls;
}

/** The file runtime of the context; a server built without one stores no files. */
export function filesOf(ctx: AppContext): FileRuntime {
  if (!ctx.files) throw new NotFoundError("This server stores no files", undefined, "not_found");
  return ctx.files;
}

/** The content type, lowercased and without parameters, when the allow-list accepts it; 415 otherwise. */
export function acceptedContentType(settings: Pick<FilesConfig, "contentTypes">, given: string | null | undefined): string {
  const type = (given ?? "").split(";")[0]!.trim().toLowerCase();
  const ok = /^[a-z0-9][a-z0-9!#$&^_.+-]*\/[a-z0-9][a-z0-9!#$&^_.+-]*$/.test(type) && settings.contentTypes.some((allowed) =>
    allowed === type || (allowed.endsWith("/*") && type.startsWith(allowed.slice(0, -1))));
  if (!ok) {
    throw new UnsupportedMediaTypeError(`Files of type ${type ? `'${type.slice(0, 100)}'` : "(none given)"} are not accepted; accepted: ${settings.contentTypes.join(", ")}`);
  }
  return type;
}

const NAME_PATTERN = /^[^\x00-\x1f\x7f/\\]{1,255}$/;

/**
 * A file name as stored: 1–255 characters, without control characters or a path (400 naming `param`
 * otherwise). With `lastSegment`, a name sent with folders (a browser's multipart file name) is cut to
 * its last segment first; a name the caller chose is refused with them.
 */
export function fileName(given: string | null | undefined, param: string, options: { lastSegment?: boolean } = {}): string {
  const name = (options.lastSegment ? (given ?? "").split(/[\\/]/).pop()! : given ?? "").trim();
  if (!NAME_PATTERN.test(name)) throw new ValidationError(`Invalid ${param}: a file name of 1–255 characters, without control characters or a path`, { param });
  return name;
}

/**
 * 415 naming `param` when the bytes are not what the type says: an image (PNG, JPEG, GIF, WebP) or a
 * PDF must start as one (src/domain/file/sniff.ts), as the model is given it as an image or its text.
 * `head` is the content's first bytes (at least 1 KiB, or all of it).
 */
export function requireContentMatches(contentType: string, head: Uint8Array, param: string): void {
  if (contentMatches(contentType, head)) return;
  throw new UnsupportedMediaTypeError(`Invalid ${param}: the content is not ${contentType} (its first bytes say otherwise)`, { param, content_type: contentType });
}

/** A content type for a file name's extension, for files given without one. */
export function contentTypeOfName(name: string | null | undefined): string | null {
  const ext = (name ?? "").toLowerCase().split(".").pop() ?? "";
  return EXTENSION_TYPES[ext] ?? null;
}

const EXTENSION_TYPES: Record<string, string> = {
  txt: "text/plain", md: "text/markdown", csv: "text/csv", tsv: "text/tab-separated-values", html: "text/html", htm: "text/html",
  json: "application/json", xml: "application/xml", yaml: "application/yaml", yml: "application/yaml", pdf: "application/pdf",
  png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif", webp: "image/webp",
  svg: "image/svg+xml", heic: "image/heic", heif: "image/heif", avif: "image/avif", bmp: "image/bmp", tif: "image/tiff", tiff: "image/tiff",
  // Video and audio: a name is all a signed upload's request carries (MUAPI's), and the allow-list still decides.
  mp4: "video/mp4", m4v: "video/mp4", mov: "video/quicktime", webm: "video/webm", mkv: "video/x-matroska", avi: "video/x-msvideo", ogv: "video/ogg",
  mp3: "audio/mpeg", wav: "audio/wav", m4a: "audio/mp4", aac: "audio/aac", ogg: "audio/ogg", oga: "audio/ogg", opus: "audio/opus", flac: "audio/flac",
  js: "text/javascript", ts: "text/plain", py: "text/x-python", log: "text/plain",
};

/** Who a file is for: its id, session (if any), end user (if any) and its session's agent. */
export interface FileOwner {
  file_id: string;
  session_id: string | null;
  user_id: string | null;
  agent_id: string | null;
}

export interface StoreFileInput {
  owner: FileOwner;
  chunks: AsyncIterable<Uint8Array>;
  name: string;
  /** Already checked against the allow-list. */
  content_type: string;
  role: FileRole;
  source: Exclude<FileSource, "signed_url">;
  message_id?: string | null;
  job_id?: string | null;
  /** At most this many bytes (the server's MAX_FILE_BYTES when absent). */
  maxBytes?: number;
  /** The request field the content came in, named by a refusal (415 when it is not what its type says); "file" when absent. */
  param?: string;
}

export interface StoredFile {
  state: FileState;
  /** Position of the last event written (read-your-writes); null when an earlier execution wrote it. */
  position: bigint | null;
}

/** Stores a file: its bytes, its blob reference, its record. */
export async function storeFile(ctx: AppContext, input: StoreFileInput, meta: CommandMetadata): Promise<StoredFile> {
  const staged = await stageBytes(ctx, input.chunks, input.maxBytes);
  return recordFile(ctx, staged, input, meta);
}

/** Stages bytes (hashed, at most `maxBytes`, MAX_FILE_BYTES by default; 413 past it) for `recordFile`. */
export async function stageBytes(ctx: AppContext, chunks: AsyncIterable<Uint8Array>, maxBytes?: number): Promise<StagedBlob> {
  const files = filesOf(ctx);
  return stage(files, chunks, maxBytes ?? files.settings.maxBytes);
}

/** Drops staged bytes that will not be recorded. */
export async function discardStaged(ctx: AppContext, staged: StagedBlob): Promise<void> {
  await filesOf(ctx).blobs.discard(staged);
}

/**
 * Records staged bytes as the file `input.owner.file_id` (its blob referenced, its bytes committed).
 * Bytes that are not what their type says are refused (415) and dropped, nothing recorded.
 */
export async function recordFile(ctx: AppContext, staged: StagedBlob, input: Omit<StoreFileInput, "chunks" | "maxBytes">, meta: CommandMetadata): Promise<StoredFile> {
  try {
    requireContentMatches(input.content_type, staged.head, input.param ?? "file");
  } catch (err) {
    await discardStaged(ctx, staged);
    throw err;
  }
  const { param: _, ...file } = input;
  return recordStaged(ctx, file.owner.file_id, staged, {
    type: "RecordUpload", ...file.owner, name: file.name, content_type: file.content_type, size: staged.size, sha256: staged.sha256,
    role: file.role, source: file.source, message_id: file.message_id ?? null, job_id: file.job_id ?? null, now: meta.now ?? Date.now(),
  }, meta);
}

/**
 * The bytes PUT to a signed upload URL (its signature already checked): recorded as the authorization
 * said, once. Refused before the body is read when the upload was used, or has expired.
 */
export async function completeSignedUpload(ctx: AppContext, fileId: string, chunks: AsyncIterable<Uint8Array>, meta: CommandMetadata): Promise<StoredFile> {
  const files = filesOf(ctx);
  const { state } = await ctx.repos.files.load(fileId);
  const now = meta.now ?? Date.now();
  // Decided now on the stored state (nothing is written): a used or expired upload is refused before its bytes are read.
  fileDecider.decide({ type: "CompleteSignedUpload", sha256: "0".repeat(64), size: state.size ?? 0, now }, state);
  const limit = Math.min(state.size ?? files.settings.maxBytes, files.settings.maxBytes);
  const staged = await stage(files, chunks, limit);
  try {
    // Bytes that are not what the upload declared are refused; the URL still takes the right ones.
    requireContentMatches(state.contentType, staged.head, "body");
  } catch (err) {
    await files.blobs.discard(staged);
    throw err;
  }
  return recordStaged(ctx, fileId, staged, { type: "CompleteSignedUpload", sha256: staged.sha256, size: staged.size, now }, meta);
}

/** Removes a file; its bytes are collected once no other file has the same content. */
export async function removeFile(ctx: AppContext, fileId: string, meta: CommandMetadata): Promise<bigint | null> {
  const r = await ctx.repos.files.handle(fileId, { type: "RemoveFile" }, meta);
  const removed = r.appended[0];
  if (removed?.type === "FileRemoved" && removed.data.sha256 !== null) await releaseBlob(ctx, removed.data.sha256, fileId, meta, filesOf(ctx).blobs, ctx.logger);
  return r.position;
}

/**
 * Drops `fileId`'s reference to the content `sha256`; when no file references it any more, removes
 * the bytes (see the file's top comment for why it parks them first). True when they were removed.
 */
export async function releaseBlob(ctx: AppContext, sha256: string, fileId: string, given: CommandMetadata, blobs: BlobStore, logger?: Logger): Promise<boolean> {
  // A blob stream outlives the erasure of every user who uploaded its content: it names none of them.
  const meta = pseudonymousMeta(given);
  const released = await ctx.repos.blobs.handle(sha256, { type: "ReleaseBlob", sha256, file_id: fileId }, meta);
  if (released.state.refs.length > 0 || released.state.collected) return false;
  const parked = await blobs.park(sha256);
  let collected = false;
  try {
    collected = (await ctx.repos.blobs.handle(sha256, { type: "CollectBlob", sha256 }, meta)).appended.length > 0;
  } finally {
    if (parked !== null) {
      if (collected) await blobs.purge(parked);
      else await blobs.restore(sha256, parked);
    }
  }
  if (collected) logger?.debug("collected a blob no file references", { sha256 });
  return collected;
}

/**
 * Puts back or removes the parked copies a collector left when its process stopped between parking
 * a blob and purging or restoring it. A copy is put back when its blob stream says the content is
 * referenced, or that its collection was never recorded (the collector may have been about to find a
 * new reference): losing bytes a file needs is worse than keeping some no file does. It is removed only
 * when the collection was recorded and nothing references the content since. Run at start-up; safe
 * while other processes collect (each step is idempotent, and a copy put back while its collector was
 * still at work is at worst kept).
 */
export async function recoverParked(ctx: AppContext, blobs: BlobStore = filesOf(ctx).blobs): Promise<{ restored: number; purged: number }> {
  const done = { restored: 0, purged: 0 };
  for (const { sha256, parked } of await blobs.parkedCopies()) {
    const { state } = await ctx.repos.blobs.load(sha256);
    if (state.refs.length > 0 || !state.collected) {
      await blobs.restore(sha256, parked);
      done.restored++;
    } else {
      await blobs.purge(parked);
      done.purged++;
    }
  }
  if (done.restored || done.purged) ctx.logger.info("recovered parked blobs a stopped collection left", done);
  return done;
}

/**
 * A file's bytes from the blob store. When they are missing but a parked copy is there and the content
 * is referenced (a collection stopped before putting it back, or is putting it back now), the copy is
 * put back first, so a file that is there reads. Null when the bytes are not there.
 */
export async function openBlob(ctx: AppContext, sha256: string): Promise<Blob | null> {
  const { blobs } = filesOf(ctx);
  const blob = await blobs.open(sha256);
  if (blob) return blob;
  const copies = await blobs.parkedCopies(sha256);
  if (copies.length === 0 || (await ctx.repos.blobs.load(sha256)).state.refs.length === 0) return null;
  for (const { parked } of copies) await blobs.restore(sha256, parked);
  ctx.logger.info("put back a parked blob a file still references", { sha256 });
  return blobs.open(sha256);
}

async function stage(files: FileRuntime, chunks: AsyncIterable<Uint8Array>, maxBytes: number): Promise<StagedBlob> {
  try {
    return await files.blobs.stage(chunks, { maxBytes });
  } catch (err) {
    if (err instanceof BlobTooLargeError) throw new PayloadTooLargeError(`The file is larger than ${maxBytes} bytes`, { max_bytes: maxBytes });
    throw err;
  }
}

/** References the staged content for the file, commits it, records the file; undoes the reference if that fails. */
async function recordStaged(ctx: AppContext, fileId: string, staged: StagedBlob, command: FileCommand, meta: CommandMetadata): Promise<StoredFile> {
  const { blobs } = filesOf(ctx);
  try {
    await ctx.repos.blobs.handle(staged.sha256, { type: "ReferenceBlob", sha256: staged.sha256, file_id: fileId, size: staged.size }, pseudonymousMeta(meta));
    await blobs.commit(staged);
    const r = await ctx.repos.files.handle(fileId, command, meta);
    return { state: r.state, position: r.position };
  } catch (err) {
    await blobs.discard(staged).catch(() => {});
    // The reference is the file's: kept when the file holds this content (an earlier, successful upload of it).
    const { state } = await ctx.repos.files.load(fileId).catch(() => ({ state: null }));
    if (!(state && state.sha256 === staged.sha256 && (state.status === "uploaded" || state.status === "removed"))) {
      await releaseBlob(ctx, staged.sha256, fileId, meta, blobs, ctx.logger).catch((e) => {
        ctx.logger.warn("could not release a blob reference after a failed upload", { sha256: staged.sha256, file_id: fileId, error: e as Error });
      });
    }
    throw err;
  }
}

/**
 * Whether the file's session was deleted (from the session's stream, never lagging): such a file is
 * gone for every reader, and its removal follows (`removeSessionFiles`).
 */
export async function sessionGone(ctx: AppContext, file: Pick<FileState, "sessionId">): Promise<boolean> {
  return file.sessionId !== null && (await ctx.repos.sessions.peek(file.sessionId)).state.status === "deleted";
}

/**
 * Removes the files of a deleted session (its attachments, artifacts and pending uploads), and with
 * them their content once no other file has it. Each removal is idempotent: several processes, and the
 * reconciler, may do it at once. Returns how many this call removed.
 */
export async function removeSessionFiles(ctx: AppContext, fileIds: readonly string[], meta: CommandMetadata): Promise<number> {
  let removed = 0;
  for (const fileId of fileIds) {
    const position = await removeFile(ctx, fileId, meta).catch((err) => {
      if (err instanceof NotFoundError) return null; // removed already
      throw err;
    });
    if (position !== null) removed++;
  }
  return removed;
}

/** The file's record from its stream (authoritative, never lagging), with the app it belongs to; null when there is none. */
export async function loadFile(ctx: AppContext, fileId: string): Promise<{ state: FileState; appId: string | null } | null> {
  const { state, appId } = await ctx.repos.files.load(fileId);
  return state.status === "none" ? null : { state, appId };
}

/** A file a tool made, as the tool is told of it. */
export interface SavedFile {
  file_id: string;
  name: string;
  content_type: string;
  size: number;
  sha256: string;
}

/**
 * Stores a file a tool made during a job as an artifact: of the job's session (and its user and
 * agent), or, in a run, of the run's user. The type must be on the allow-list (415 otherwise, which
 * the tool step shows the model as the tool's error).
 */
export async function saveArtifact(
  ctx: AppContext, jobId: string, file: { name: string; content_type: string; content: string | Uint8Array }, meta: CommandMetadata,
): Promise<SavedFile> {
  const files = filesOf(ctx);
  const { state: job } = await ctx.repos.jobs.load(jobId);
  const queued = job.queued;
  if (!queued) throw new NotFoundError("The job is not known", undefined, "job_not_found");
  const contentType = acceptedContentType(files.settings, file.content_type);
  const fileId = newResourceId("file");
  const bytes = typeof file.content === "string" ? new TextEncoder().encode(file.content) : file.content;
  const { state } = await storeFile(ctx, {
    owner: { file_id: fileId, session_id: queued.session_id, user_id: queued.user_id, agent_id: queued.agent_id },
    chunks: chunksOf(bytes), name: file.name, content_type: contentType, role: "artifact", source: "tool", job_id: jobId, param: "content",
  }, meta);
  return { file_id: fileId, name: state.name, content_type: state.contentType, size: state.size!, sha256: state.sha256! };
}
