/**
 * What a file's first bytes say it is, for the types whose content goes to a model as more than text:
 * images (sent as image input) and PDFs (parsed for their text). A file declared as one of them must
 * start as one; declared types are otherwise taken as given (text is text whatever it says).
 */

/** How many leading bytes the checks need (a PDF's header may follow up to 1 KiB of junk, as readers accept). */
export const SNIFF_BYTES = 1024;

const ascii = (bytes: Uint8Array, at: number, text: string): boolean =>
  bytes.length >= at + text.length && [...text].every((c, i) => bytes[at + i] === c.charCodeAt(0));

const startsWith = (bytes: Uint8Array, prefix: readonly number[]): boolean =>
  bytes.length >= prefix.length && prefix.every((b, i) => bytes[i] === b);

const CHECKS: Record<string, (head: Uint8Array) => boolean> = {
  "image/png": (h) => startsWith(h, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  "image/jpeg": (h) => startsWith(h, [0xff, 0xd8, 0xff]),
  "image/gif": (h) => ascii(h, 0, "GIF87a") || ascii(h, 0, "GIF89a"),
  "image/webp": (h) => ascii(h, 0, "RIFF") && ascii(h, 8, "WEBP"),
  "application/pdf": (h) => Buffer.from(h.subarray(0, SNIFF_BYTES)).includes("%PDF-"),
};

/** Whether the content type is one whose bytes are checked. */
export const isSniffed = (contentType: string): boolean => Object.hasOwn(CHECKS, contentType);

/**
 * Whether `head` (at least the first SNIFF_BYTES bytes, or the whole file when shorter) is content
 * of `contentType`: for images and PDFs, their signature; for any other type, true.
 */
export function contentMatches(contentType: string, head: Uint8Array): boolean {
  const check = CHECKS[contentType];
  return check ? check(head) : true;
}

/**
 * The type a file's first bytes show, for a file sent with neither a content type nor a telling name:
 * a PDF when it starts as one; an image by its signature when the bytes are not text (an image always
 * holds binary bytes, so a note that begins "GIF89a is…" stays text); text when the bytes are UTF-8
 * without control bytes (other than whitespace); else null (the caller refuses it as of no accepted type).
 */
export function sniffContentType(head: Uint8Array): string | null {
  if (ascii(head, 0, "%PDF-")) return "application/pdf";
  const text = looksLikeText(head);
  if (!text) for (const [type, check] of Object.entries(CHECKS)) if (type.startsWith("image/") && check(head)) return type;
  return text ? "text/plain" : null;
}

function looksLikeText(head: Uint8Array): boolean {
  if (head.length === 0) return false;
  // A multi-byte character cut at the end of the sniffed window is still text.
  const decoded = new TextDecoder("utf-8", { fatal: false }).decode(head);
  const body = head.length >= SNIFF_BYTES ? decoded.replace(/\uFFFD{1,3}$/, "") : decoded;
  return !/[\u0000-\u0008\u000B\u000E-\u001F\u007F\uFFFD]/.test(body);
}
