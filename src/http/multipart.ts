/**
 * A streaming multipart/form-data reader (RFC 7578): parts come one at a time, each part's body as a
 * stream of chunks, so a file part can be written to storage as it arrives and never sits whole in
 * memory. Malformed input (no boundary, a part without headers or without a name, headers too long,
 * a body that ends before the closing delimiter) is a 400 naming the body.
 */
import { ValidationError } from "../core/errors.ts";

export interface MultipartPart {
  /** The form field's name. */
  name: string;
  /** The file name, for a file part. */
  filename: string | null;
  /** The part's Content-Type (lowercase, without parameters); null when it declared none. */
  contentType: string | null;
  /** The part's bytes. Read it whole (or not at all) before asking for the next part. */
  body: AsyncGenerator<Uint8Array>;
}

export interface MultipartLimits {
  /** Parts at most (file and fields together). */
  maxParts: number;
  /** Bytes of one part's headers at most. */
  maxHeaderBytes: number;
}

const CRLF = Buffer.from("\r\n");
const HEADER_END = Buffer.from("\r\n\r\n");

const bad = (why: string) => new ValidationError(`The multipart body is malformed: ${why}`, { param: "body", location: "body" });

/** The boundary of a `multipart/form-data; boundary=…` content type; 400 when it has none. */
export function boundaryOf(contentType: string | null): string {
  const match = /;\s*boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))/i.exec(contentType ?? "");
  const boundary = match?.[1] ?? match?.[2];
  if (!boundary) throw bad("the content type names no boundary");
  return boundary;
}

/** The parts of a multipart body, in order. */
export async function* multipartParts(source: AsyncIterable<Uint8Array>, boundary: string, limits: MultipartLimits): AsyncGenerator<MultipartPart> {
  const input = source[Symbol.asyncIterator]();
  let buf: Buffer = Buffer.alloc(0);
  let ended = false;
  const more = async (): Promise<boolean> => {
    if (ended) return false;
    const next = await input.next();
    if (next.done) {
      ended = true;
      return false;
    }
    const chunk = Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    return true;
  };
  const dashBoundary = Buffer.from(`--${boundary}`);
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  try {
    // The preamble, up to the first boundary (at the very start, or after a line break).
    for (;;) {
      const at = buf.indexOf(dashBoundary);
      if (at === 0 || (at > 0 && buf.indexOf(delimiter) === at - 2)) {
        buf = buf.subarray(at + dashBoundary.length);
        break;
      }
      if (buf.length > 64 * 1024) throw bad("no boundary where the body starts");
      if (!(await more())) throw bad("the body ends before its first boundary");
    }
    for (let count = 0; ; count++) {
      // After a boundary: "--" closes the body; otherwise optional whitespace, then a line break.
      while (buf.length < 2) if (!(await more())) throw bad("the body ends after a boundary");
      if (buf[0] === 0x2d && buf[1] === 0x2d) return;
      let eol = buf.indexOf(CRLF);
      while (eol < 0) {
        if (buf.length > 1024) throw bad("a boundary line is too long");
        if (!(await more())) throw bad("the body ends after a boundary");
        eol = buf.indexOf(CRLF);
      }
      if (buf.subarray(0, eol).toString("latin1").trim() !== "") throw bad("text follows a boundary on its line");
      buf = buf.subarray(eol + 2);
      if (count >= limits.maxParts) throw bad(`more than ${limits.maxParts} parts`);

      // The part's headers.
      let end = buf.indexOf(HEADER_END);
      while (end < 0 && !(buf.length >= 2 && buf[0] === 0x0d && buf[1] === 0x0a)) {
        if (buf.length > limits.maxHeaderBytes) throw bad(`a part's headers are longer than ${limits.maxHeaderBytes} bytes`);
        if (!(await more())) throw bad("the body ends inside a part's headers");
        end = buf.indexOf(HEADER_END);
      }
      if (end < 0 || buf.indexOf(CRLF) === 0) throw bad("a part has no Content-Disposition header");
      if (end > limits.maxHeaderBytes) throw bad(`a part's headers are longer than ${limits.maxHeaderBytes} bytes`);
      const headers = parseHeaders(buf.subarray(0, end).toString("utf8"));
      buf = buf.subarray(end + 4);

      // The part's body, up to the next delimiter; what the consumer leaves unread is skipped.
      let done = false;
      const body = (async function* () {
        for (;;) {
          const at = buf.indexOf(delimiter);
          if (at >= 0) {
            const last = buf.subarray(0, at);
            buf = buf.subarray(at + delimiter.length);
            done = true;
            if (last.length) yield last;
            return;
          }
          // Everything but a tail that could be the start of the delimiter is the part's.
          const keep = Math.min(buf.length, delimiter.length - 1);
          if (buf.length > keep) {
            const out = buf.subarray(0, buf.length - keep);
            buf = Buffer.from(buf.subarray(buf.length - keep));
            yield out;
          }
          if (!(await more())) throw bad("the body ends inside a part");
        }
      })();
      yield { ...headers, body };
      if (!done) for await (const _ of body) { /* skipped */ }
    }
  } finally {
    await input.return?.();
  }
}

function parseHeaders(text: string): Omit<MultipartPart, "body"> {
  let disposition: string | null = null;
  let contentType: string | null = null;
  for (const line of text.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) throw bad("a part header has no name");
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "content-disposition") disposition = value;
    else if (name === "content-type") contentType = value.split(";")[0]!.trim().toLowerCase() || null;
  }
  if (!disposition || !/^form-data\b/i.test(disposition)) throw bad("a part has no Content-Disposition: form-data header");
  const name = param(disposition, "name");
  if (!name) throw bad("a part has no field name");
  const filenameStar = param(disposition, "filename*");
  let filename = param(disposition, "filename");
  if (filenameStar) {
    const m = /^utf-8''(.*)$/i.exec(filenameStar);
    if (m) {
      try {
        filename = decodeURIComponent(m[1]!);
      } catch {
        throw bad("a part's filename* is not valid");
      }
    }
  }
  return { name, filename, contentType };
}

/** A Content-Disposition parameter: quoted (with backslash escapes) or a token. */
function param(header: string, key: string): string | null {
  const re = new RegExp(`;\\s*${key.replace("*", "\\*")}\\s*=\\s*(?:"((?:[^"\\\\]|\\\\.)*)"|([^;\\s]+))`, "i");
  const m = re.exec(header);
  if (!m) return null;
  return m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2]!;
}
