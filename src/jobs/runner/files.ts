/**
 * What the model reads of a message's files, within a budget: text-like files as text, PDFs as their
 * extracted text (unpdf), images as image input (each provider maps them to its own format). The text
 * of all a message's files together is at most FILE_MODEL_BUDGET_CHARS characters: a file over what
 * is left is cut, and the cut is marked in the text the model reads. An image over
 * FILE_MODEL_IMAGE_BYTES, or a file of another type, is named with a note instead.
 *
 * Files are read from the blob store by the id and hash the message's event names; messages recorded
 * before files were stored apart carry their bytes inline (`data`) and are read from there.
 */
import type { FilesConfig } from "../../config.ts";
import type { AppContext } from "../../app/context.ts";
import { loadFile, openBlob } from "../../app/files.ts";
import { contentMatches, SNIFF_BYTES } from "../../domain/file/sniff.ts";
import type { ChatFile, ChatMessage } from "../../llm/provider.ts";

/** The attachment fields this reads (the session's Attachment). */
interface FileAttachment {
  type: string;
  name?: string;
  content_type?: string;
  data?: string;
  file_id?: string;
}

/** At most this many images go to the model with one message. */
const MAX_IMAGES = 10;

/** Whose files a job may read: its app (data partition), and its session and end user. */
export interface JobFiles {
  appId: string;
  sessionId: string | null;
  userId: string | null;
}

/** The user's message with the files its attachments name, as the model reads them. */
export async function withFiles(ctx: AppContext, message: Extract<ChatMessage, { role: "user" }>, attachments: readonly FileAttachment[], job: JobFiles): Promise<ChatMessage> {
  if (!ctx.files || !attachments.some((a) => a.type === "file" && (a.file_id || a.data))) return message;
  const files = await readFiles(ctx, attachments, job, ctx.files.settings);
  return files.length ? { ...message, files } : message;
}

/** Reads the attached files in order, spending one text budget across them. */
export async function readFiles(ctx: AppContext, attachments: readonly FileAttachment[], job: JobFiles, settings: Pick<FilesConfig, "modelBudgetChars" | "modelImageBytes">): Promise<ChatFile[]> {
  const out: ChatFile[] = [];
  let budget = settings.modelBudgetChars;
  let images = 0;
  for (const a of attachments) {
    if (a.type !== "file" || (!a.file_id && !a.data)) continue;
    const file = await openAttachment(ctx, a, job);
    const name = file?.name ?? a.name ?? "file";
    if (!file) {
      out.push(note(name, a.content_type ?? "application/octet-stream", "the file was removed or is not available"));
      continue;
    }
    const kind = kindOf(file.contentType);
    try {
      // Checked when it was stored; checked again for files stored before that, and older inline bytes.
      const type = file.contentType.split(";")[0]!.trim().toLowerCase();
      if ((kind === "image" || kind === "pdf") && !contentMatches(type, await file.bytes(SNIFF_BYTES))) {
        out.push(note(name, file.contentType, `its content is not ${type}, whatever its type says`));
        continue;
      }
      if (kind === "image") {
        if (images >= MAX_IMAGES) out.push(note(name, file.contentType, `only the first ${MAX_IMAGES} images of a message are shown`));
        else if (file.size > settings.modelImageBytes) out.push(note(name, file.contentType, `the image is ${file.size} bytes, over the ${settings.modelImageBytes}-byte limit for images`));
        else {
          images++;
          out.push({ kind: "image", name, content_type: file.contentType, data: Buffer.from(await file.bytes()).toString("base64") });
        }
      } else if ((kind === "text" || kind === "pdf") && budget <= 0) {
        // Nothing of it would be shown: said so (and not cited), rather than a cut of zero characters.
        out.push(note(name, file.contentType, "the files before it used the whole file budget"));
      } else if (kind === "text" || kind === "pdf") {
        // A text file is read only as far as the budget could show (UTF-8: at most 4 bytes a character).
        const text = kind === "pdf" ? await pdfText(await file.bytes()) : new TextDecoder().decode(await file.bytes(Math.max(0, budget) * 4 + 4));
        const total = kind === "pdf" ? text.length : file.size <= Math.max(0, budget) * 4 + 4 ? text.length : null;
        const shown = cut(text, budget, total, name, file.size);
        budget -= Math.min(text.length, Math.max(0, budget));
        out.push({ kind: "text", name, content_type: file.contentType, text: shown.text, truncated: shown.truncated });
      } else {
        out.push(note(name, file.contentType, `a ${file.contentType} file of ${file.size} bytes cannot be read as text or as an image`));
      }
    } catch (err) {
      ctx.logger.warn("a file could not be read for the model", { name, error: err as Error });
      out.push(note(name, file.contentType, kind === "pdf" ? "its text could not be extracted" : "it could not be read"));
    }
  }
  return out;
}

/**
 * `text` within `budget` characters; a cut is marked with how much was shown of how much: of `total`
 * characters when the whole file was read, else of its size in bytes.
 */
export function cut(text: string, budget: number, total: number | null, name: string, bytes: number): { text: string; truncated: boolean } {
  if (text.length <= budget && total !== null) return { text, truncated: false };
  const shown = text.slice(0, Math.max(0, budget));
  const of = total !== null ? `${shown.length} of ${total} characters of ${name}` : `${shown.length} characters of ${name} (${bytes} bytes)`;
  return { text: `${shown}\n[… cut: ${of} are shown; the rest is over the file budget]`, truncated: true };
}

type Kind = "text" | "pdf" | "image" | "other";

const TEXT_TYPES = new Set(["application/json", "application/xml", "application/yaml", "application/x-yaml", "application/javascript", "application/x-ndjson", "application/csv", "application/sql"]);
const IMAGE_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);

export function kindOf(contentType: string): Kind {
  const type = contentType.split(";")[0]!.trim().toLowerCase();
  if (type.startsWith("text/") || TEXT_TYPES.has(type) || type.endsWith("+json") || type.endsWith("+xml")) return "text";
  if (type === "application/pdf") return "pdf";
  if (IMAGE_TYPES.has(type)) return "image";
  return "other";
}

const note = (name: string, content_type: string, why: string): ChatFile => ({ kind: "text", name, content_type, text: `[${name} is not shown: ${why}]`, truncated: false, unread: true });

interface OpenedFile {
  name: string;
  contentType: string;
  size: number;
  /** The bytes, or only the first `limit` of them. */
  bytes(limit?: number): Promise<Uint8Array>;
}

/**
 * The attachment's file: from the blob store (by id), or from an older message's inline bytes. Only a
 * file the job may read is read: of its app, and of its session and user or of none (an app-level
 * file). The API checks this when the message is sent; this holds whatever wrote the event.
 */
async function openAttachment(ctx: AppContext, a: FileAttachment, job: JobFiles): Promise<OpenedFile | null> {
  if (a.data !== undefined && !a.file_id) {
    const bytes = new Uint8Array(Buffer.from(a.data, "base64"));
    return { name: a.name ?? "file", contentType: a.content_type ?? "application/octet-stream", size: bytes.byteLength, bytes: async (limit) => (limit === undefined ? bytes : bytes.subarray(0, limit)) };
  }
  const loaded = await loadFile(ctx, a.file_id!);
  if (!loaded || loaded.appId !== job.appId || loaded.state.status !== "uploaded") return null;
  const owner = loaded.state;
  if ((owner.sessionId !== null && owner.sessionId !== job.sessionId) || (owner.userId !== null && owner.userId !== job.userId)) return null;
  const blob = await openBlob(ctx, loaded.state.sha256!);
  if (!blob) return null;
  const { name, contentType, size } = loaded.state;
  return { name, contentType, size: size!, bytes: async (limit) => new Uint8Array(await (limit === undefined || limit >= size! ? blob : blob.slice(0, limit)).arrayBuffer()) };
}

async function pdfText(bytes: Uint8Array): Promise<string> {
  const { extractText, getDocumentProxy } = await import("unpdf");
  const { text } = await extractText(await getDocumentProxy(new Uint8Array(bytes)), { mergePages: true });
  return text;
}
