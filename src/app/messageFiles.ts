/**
 * A message's file attachments, made into file references before the message is recorded: an inline
 * file (`data`, base64) is stored as a file of the session, and a `file_id` is checked (the caller's
 * app, and user when it acts as one; this session or none). The MessageSent event then names each file
 * by id and hash and holds no bytes — EventStoreDB refuses writes over 1 MiB, and events are kept forever.
 *
 * Every attachment is checked before any is stored, so a message refused for one bad attachment
 * stores nothing; the files stored for a message that is then refused are removed (`forgetStored`).
 */
import { NotFoundError, PayloadTooLargeError, ValidationError } from "../core/errors.ts";
import type { Attachment } from "../domain/session/session.ts";
import type { SessionRow } from "../../projections/sessions/index.ts";
import type { AppContext } from "./context.ts";
import { requireAgentAllowed, requireUser } from "./access.ts";
import { acceptedContentType, contentTypeOfName, fileName, filesOf, loadFile, removeFile, requireContentMatches, storeFile } from "./files.ts";
import { SNIFF_BYTES, sniffContentType } from "../domain/file/sniff.ts";
import type { CommandMetadata } from "./repository.ts";
import { chunksOf } from "../blobs/staging.ts";

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;

/** The id of a message's `index`-th inline file: fixed by the message id, so a retried request stores the same file. */
export const inlineFileId = (messageId: string, index: number): string => `file_${messageId.replace(/^msg_/, "")}_${index}`;

/** An inline file, checked and decoded, to be stored. */
interface InlineFile {
  index: number;
  bytes: Uint8Array;
  name: string;
  contentType: string;
}

/**
 * The message's attachments as its event records them. Each is checked first (400/403/404/413/415
 * naming it, nothing stored); then the inline files are stored, their ids pushed to `stored` as they
 * are, so a caller whose message is then refused — or whose storing fails midway — can remove them.
 */
export async function resolveAttachments(
  ctx: AppContext, session: Pick<SessionRow, "id" | "user_id" | "agent_id">, given: readonly Attachment[], messageId: string, meta: CommandMetadata,
  stored: string[],
): Promise<Attachment[]> {
  const out: Attachment[] = [];
  const inline: InlineFile[] = [];
  for (let i = 0; i < given.length; i++) {
    const a = given[i]!;
    const param = `attachments.${i}`;
    if (a.type !== "file" || (a.data === undefined && a.file_id === undefined)) {
      if (a.file_id !== undefined || a.data !== undefined) throw new ValidationError(`Invalid ${param}: data and file_id belong to type "file"`, { param });
      out.push(a);
      continue;
    }
    if (a.data !== undefined && a.file_id !== undefined) throw new ValidationError(`Invalid ${param}: send data or file_id, not both`, { param });
    if (a.file_id !== undefined) {
      out.push(await referencedFile(ctx, session, a.file_id, `${param}.file_id`));
      continue;
    }
    const files = filesOf(ctx);
    const bytes = decodeBase64(a.data!, `${param}.data`);
    if (bytes.byteLength > files.settings.maxBytes) {
      throw new PayloadTooLargeError(`Invalid ${param}: the file is larger than ${files.settings.maxBytes} bytes`, { param: `${param}.data`, max_bytes: files.settings.maxBytes });
    }
    // A name is stored and shown as given: the same rules as an upload's (no path, no control characters).
    const name = a.name === undefined || a.name.trim() === "" ? `attachment-${i + 1}` : fileName(a.name, `${param}.name`);
    // A client may send neither a type nor a name (Magus's doc marks neither required): then the bytes
    // decide. A name given is the client's word for the type, as with an upload.
    const unnamed = a.name === undefined || a.name.trim() === "";
    const contentType = acceptedContentType(files.settings, a.content_type ?? contentTypeOfName(name) ?? (unnamed ? sniffContentType(bytes.subarray(0, SNIFF_BYTES)) : null));
    requireContentMatches(contentType, bytes.subarray(0, SNIFF_BYTES), `${param}.data`);
    inline.push({ index: i, bytes, name, contentType });
    out.push(a); // replaced by its file's reference once stored
  }
  for (const f of inline) {
    const fileId = inlineFileId(messageId, f.index);
    const { state } = await storeFile(ctx, {
      owner: { file_id: fileId, session_id: session.id, user_id: session.user_id, agent_id: session.agent_id },
      chunks: chunksOf(f.bytes), name: f.name, content_type: f.contentType, role: "attachment", source: "message", message_id: messageId,
      param: `attachments.${f.index}.data`,
    }, meta);
    stored.push(fileId);
    out[f.index] = reference(fileId, state.name, state.contentType, state.size!, state.sha256!);
  }
  return out;
}

/** Removes the files a refused message stored (best effort: they are the caller's own files either way). */
export async function forgetStored(ctx: AppContext, stored: readonly string[], meta: CommandMetadata): Promise<void> {
  for (const fileId of stored) await removeFile(ctx, fileId, meta).catch(() => {});
}

const reference = (file_id: string, name: string, content_type: string, size: number, sha256: string): Attachment =>
  ({ type: "file", file_id, name, content_type, size, sha256 });

/**
 * An uploaded file the message names: of the caller's app, uploaded, of this session or none, and of
 * the session's user or none. A request acting as an end user may name only that user's own files
 * (403 otherwise, as `GET /v1/files/{id}` answers): an app-level file (no user) is not theirs to read.
 */
async function referencedFile(ctx: AppContext, session: Pick<SessionRow, "id" | "user_id">, fileId: string, param: string): Promise<Attachment> {
  const loaded = await loadFile(ctx, fileId);
  if (!loaded || loaded.appId !== ctx.appId || loaded.state.status === "removed") throw new NotFoundError("File not found", { param }, "file_not_found");
  const f = loaded.state;
  if (f.agentId) requireAgentAllowed(ctx, f.agentId);
  requireUser(ctx, f.userId);
  if (f.status !== "uploaded") throw new ValidationError(`Invalid ${param}: the file's upload has not arrived yet`, { param });
  if ((f.sessionId !== null && f.sessionId !== session.id) || (f.userId !== null && f.userId !== session.user_id)) {
    throw new ValidationError(`Invalid ${param}: the file belongs to another session or user`, { param });
  }
  return reference(fileId, f.name, f.contentType, f.size!, f.sha256!);
}

/** Standard or URL-safe base64 (line breaks allowed); 400 naming `param` otherwise. */
function decodeBase64(data: string, param: string): Uint8Array {
  const text = data.replace(/[\r\n]/g, "");
  const ok = text.length % 4 === 0 ? BASE64.test(text) || BASE64URL.test(text) : BASE64URL.test(text) && !text.includes("=");
  if (!ok) throw new ValidationError(`Invalid ${param}: not base64`, { param });
  return Buffer.from(text, BASE64.test(text) ? "base64" : "base64url");
}
