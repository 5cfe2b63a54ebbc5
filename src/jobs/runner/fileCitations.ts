/**
 * File citations: a reply cites each of its message's files the model read (text, PDF text, an image),
 * with a snippet of what it was shown (the image's name for an image). A file the model was not shown
 * (removed, unreadable, over a limit) is not cited.
 */
import type { Citation } from "../../domain/shared/citations.ts";
import { snippetOf } from "../../domain/shared/citations.ts";
import type { ChatFile } from "../../llm/provider.ts";

/** The message's attachments as stored (a file attachment names its `file_id` once stored). */
interface Attached {
  type: string;
  file_id?: string | null;
  data?: string | null;
}

/**
 * Citations for the files read: `files` holds one entry per file attachment, in their order (what
 * runner/files.ts read: the content, or a note saying why it is not shown).
 */
export function fileCitations(attachments: readonly Attached[], files: readonly ChatFile[] | undefined): Citation[] {
  if (!files?.length) return [];
  const read = attachments.filter((a) => a.type === "file" && (a.file_id || a.data));
  const out: Citation[] = [];
  read.forEach((a, i) => {
    const f = files[i];
    if (!a.file_id || !f) return;
    if (f.kind === "image") out.push({ file_id: a.file_id, snippet: `[image ${f.name}]` });
    else if (!f.unread) out.push({ file_id: a.file_id, snippet: snippetOf(f.text) });
  });
  return out;
}
