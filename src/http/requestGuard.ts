/**
 * What every request goes through before a route sees it, in this order:
 *
 * 0. A request id (the caller's `x-request-id`, or a new one), sent back on every response.
 * 1. Authentication (for the API prefixes): the key is checked before the body is read or the input
 *    validated, so a caller without a key learns nothing about the schema and costs no parsing.
 * 2. The body: JSON only (415 otherwise), at most `maxBodyBytes` (413, counted while streaming, so an
 *    oversized body is never buffered whole), within `bodyTimeoutMs` of the request's start (408, so a
 *    half-sent body cannot hold a connection), well-formed UTF-16 (400: a lone surrogate would be
 *    stored in the event as sent but replaced by U+FFFD in read models).
 * 3. Query numbers and booleans strictly as written: `0x10`, `1e3`, ` 5` or `+5` are refused rather
 *    than coerced, and out-of-range values name the parameter.
 *
 * A few routes take bytes rather than JSON (file uploads): each is declared as a streamed body with
 * its own content types and size limit. The guard checks those (415, and 413 on a declared length)
 * and leaves the body unread; the route reads it through `streamedBody`, which counts bytes as they
 * arrive (413 past the limit, nothing more is read) and bounds the wait for each chunk (408). Every
 * other route keeps the JSON rules above.
 */
import { Elysia, type TSchema } from "elysia";
import { enterRequest } from "../core/requestContext.ts";
import {
  PayloadTooLargeError, RequestTimeoutError, UnsupportedMediaTypeError, ValidationError,
} from "../core/errors.ts";

/** A part of the API with its own credentials: requests under `prefix` must pass `authenticate`. */
export interface ProtectedArea {
  prefix: string;
  /**
   * Throws (401/403, or 429 over a rate limit) unless the request carries valid credentials; may be
   * async (a JWT to verify). `headers` are the response's: what it sets there is sent whatever the answer.
   */
  authenticate(request: Request, headers: Record<string, string | number>): void | Promise<void>;
}

export interface RequestGuardOptions {
  /** The protected areas; a request is checked by the one with the longest matching prefix. */
  areas: readonly ProtectedArea[];
  maxBodyBytes: number;
  bodyTimeoutMs: number;
  /** Routes whose body is bytes the route streams itself (uploads); every other body must be JSON. */
  streamedBodies?: readonly StreamedBodyRoute[];
}

/** A route that takes a streamed body instead of JSON. */
export interface StreamedBodyRoute {
  method: string;
  /** Matched against the request's path. */
  path: RegExp;
  /** Accepted media types (lowercase, without parameters); "any" for raw bytes of any type. */
  contentTypes: readonly string[] | "any";
  /** The most bytes the body may hold. */
  maxBytes: number;
  /** The most a whole body may take to arrive (each chunk must still come within the guard's bodyTimeoutMs). */
  totalTimeoutMs: number;
}

/** What the parse step hands a streamed-body route: the body itself is left unread for `streamedBody`. */
export const STREAMED_BODY = Object.freeze({ streamed: true as const });

const BODY_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export function requestGuard(options: RequestGuardOptions) {
  const areas = [...options.areas].sort((x, y) => y.prefix.length - x.prefix.length);
  const guard = new Elysia({ name: "agentry.request-guard" })
    .onRequest(({ request, set }) => {
      // Every response, errors included, carries a request id: the caller's, or a new one to quote in reports.
      const requestId = clientRequestId(request) ?? crypto.randomUUID();
      set.headers["x-request-id"] = requestId;
      requestIds.set(request, requestId);
      // …and so does every log line written while it is handled.
      enterRequest(requestId);
      const path = pathOf(request.url);
      const area = areas.find((a) => path === a.prefix || path.startsWith(`${a.prefix}/`));
      if (area) return area.authenticate(request, set.headers) as undefined; // a promise is awaited by Elysia
    })
    .onParse({ as: "global" }, async ({ request, contentType }) => {
      if (!BODY_METHODS.has(request.method)) return undefined;
      const streamed = options.streamedBodies?.find((r) => r.method === request.method && r.path.test(pathOf(request.url)));
      if (streamed) return acceptStreamed(request, contentType, streamed, options.bodyTimeoutMs);
      const text = await readBody(request, options.maxBodyBytes, options.bodyTimeoutMs);
      bodiesRead.add(request);
      if (text.length === 0) return undefined;
      const type = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
      if (type !== "application/json" && !type.endsWith("+json")) {
        throw new UnsupportedMediaTypeError(`Send the body as JSON (content-type: application/json), not ${type || "untyped"}`);
      }
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw new ValidationError("The request body is not valid JSON", undefined, "invalid_json");
      }
      // Every body this API takes is an object. Checked here because the schema check lets an array
      // through where every field is optional (it would read as an empty object).
      if (typeof body !== "object" || body === null || Array.isArray(body)) {
        throw new ValidationError("The request body must be a JSON object", { param: "body", location: "body" });
      }
      const bad = illFormedString(body, "");
      if (bad !== null) {
        const param = bad.path || "body";
        throw new ValidationError(
          bad.proto ? `Invalid body field '${param}': __proto__ is not a field name` : `Invalid body field '${param}': a string holds an unpaired UTF-16 surrogate`,
          { param, location: "body" },
        );
      }
      return body;
    })
    .onTransform({ as: "global" }, ({ request, route }) => {
      const at = request.url.indexOf("?");
      if (at < 0 || at === request.url.length - 1) return;
      const properties = queryProperties(request.method, route);
      if (properties) readQuery(request.url.slice(at + 1), properties);
    });
  /** The query schema's properties per route, looked up once (the routes are all mounted by the first request). */
  const queryByRoute = new Map<string, Record<string, TSchema> | null>();
  const queryProperties = (method: string, route: string) => {
    const key = `${method} ${route}`;
    let found = queryByRoute.get(key);
    if (found === undefined) {
      const schema = root?.routes?.find((r) => r.method === method && r.path === route)?.hooks?.query as TSchema | undefined;
      found = (schema?.properties as Record<string, TSchema> | undefined) ?? null;
      queryByRoute.set(key, found);
    }
    return found;
  };
  let root: { routes: Array<{ method: string; path: string; hooks?: { query?: TSchema } }> } | undefined;
  return Object.assign(guard, {
    /** Gives the guard the assembled app, whose routes' query schemas it checks against. */
    attach(app: { routes: unknown }) {
      root = app as typeof root;
    },
  });
}

/**
 * The caller's `x-request-id`, when it is one we can carry (it goes into every event the request
 * writes, and back in the response): at most 128 visible ASCII characters. Otherwise a new one is used.
 */
export function clientRequestId(request: Request): string | null {
  const given = request.headers.get("x-request-id");
  return given !== null && given.length <= 128 && /^[\x21-\x7e]+$/.test(given) ? given : null;
}

const requestIds = new WeakMap<Request, string>();

/** The request id the guard gave a request (the caller's, or a new one): recorded on the events it writes. */
export const requestIdOf = (request: Request): string | undefined => requestIds.get(request);

const pathOf = (url: string): string => {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  const end = url.indexOf("?", start);
  return start < 0 ? "/" : url.slice(start, end < 0 ? undefined : end);
};

/** Requests whose whole body was read: after an error on one of these, the connection can be reused. */
const bodiesRead = new WeakSet<Request>();

/**
 * Whether answering `request` early leaves part of its body unread on the connection (a refusal
 * before or while reading it). Such a connection is closed with the answer: otherwise a client that
 * sent half a body holds the socket until the server's idle timeout.
 */
export function bodyLeftUnread(request: Request): boolean {
  if (bodiesRead.has(request)) return false;
  const length = request.headers.get("content-length");
  return (length !== null && length !== "0") || request.headers.has("transfer-encoding");
}

/** Reads the body as text, refusing it past `maxBytes` or `timeoutMs` without buffering more. */
async function readBody(request: Request, maxBytes: number, timeoutMs: number): Promise<string> {
  const declared = Number(request.headers.get("content-length") ?? "NaN");
  if (declared > maxBytes) throw tooLarge(maxBytes);
  if (!request.body) return "";
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RequestTimeoutError(`The request body did not arrive within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    for (;;) {
      const { value, done } = await Promise.race([reader.read(), deadline]);
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) throw tooLarge(maxBytes);
      chunks.push(value);
    }
  } catch (err) {
    void reader.cancel().catch(() => {});
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Checks a streamed body's type and declared length, and leaves it unread for the route. */
function acceptStreamed(request: Request, contentType: string | undefined, route: StreamedBodyRoute, idleMs: number): typeof STREAMED_BODY {
  const type = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  if (route.contentTypes !== "any" && !route.contentTypes.includes(type)) {
    throw new UnsupportedMediaTypeError(`Send the body as ${route.contentTypes.join(" or ")}, not ${type || "untyped"}`);
  }
  const declared = Number(request.headers.get("content-length") ?? "NaN");
  if (declared > route.maxBytes) throw tooLarge(route.maxBytes);
  streamedLimits.set(request, { maxBytes: route.maxBytes, idleMs, totalMs: route.totalTimeoutMs });
  return STREAMED_BODY;
}

const streamedLimits = new WeakMap<Request, { maxBytes: number; idleMs: number; totalMs: number }>();

/**
 * The body of a streamed-body route, chunk by chunk: 413 past its limit (the rest is not read), 408
 * when a chunk does not arrive in time or the whole body takes too long. A consumer that stops early
 * cancels the body. Once it was read to its end, an error answer may keep the connection open.
 */
export async function* streamedBody(request: Request): AsyncGenerator<Uint8Array> {
  const limits = streamedLimits.get(request);
  if (!limits) throw new Error("streamedBody: the route is not declared as a streamed body");
  if (!request.body) {
    bodiesRead.add(request);
    return;
  }
  const reader = request.body.getReader();
  const deadline = Date.now() + limits.totalMs;
  let size = 0;
  let finished = false;
  try {
    for (;;) {
      const wait = Math.min(limits.idleMs, deadline - Date.now());
      if (wait <= 0) throw new RequestTimeoutError(`The request body did not arrive within ${limits.totalMs} ms`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new RequestTimeoutError(`The request body stalled for more than ${wait} ms`)), wait);
      });
      let next: Awaited<ReturnType<typeof reader.read>>;
      try {
        next = await Promise.race([reader.read(), timeout]);
      } finally {
        clearTimeout(timer);
      }
      if (next.done) break;
      size += next.value.byteLength;
      if (size > limits.maxBytes) throw tooLarge(limits.maxBytes);
      yield next.value;
    }
    finished = true;
    bodiesRead.add(request);
  } finally {
    if (!finished) void reader.cancel().catch(() => {});
  }
}

const tooLarge = (maxBytes: number) => new PayloadTooLargeError(`The request body is larger than ${maxBytes} bytes`, { max_bytes: maxBytes });

/**
 * The path of the first string (or key) holding a lone surrogate, or of a `__proto__` key (`proto`);
 * null when the body has neither.
 */
function illFormedString(value: unknown, path: string): { path: string; proto?: true } | null {
  if (typeof value === "string") return value.isWellFormed() ? null : { path };
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = illFormedString(value[i], path ? `${path}.${i}` : String(i));
      if (found !== null) return found;
    }
  } else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      const at = path ? `${path}.${k}` : k;
      if (!k.isWellFormed()) return { path: at };
      // JSON.parse keeps it as a plain key, but copying the object sets a prototype instead: the
      // field would vanish without a word (and could reach an object's prototype chain).
      if (k === "__proto__") return { path: at, proto: true };
      const found = illFormedString(v, at);
      if (found !== null) return found;
    }
  }
  return null;
}

const SCALARS = new Set(["integer", "number", "boolean"]);
const INTEGER = /^-?(0|[1-9][0-9]{0,14})$/;
const DECIMAL = /^-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,15})?$/;

/** Elysia turns a query integer into a union of a numeric string and the integer: the latter. */
export const scalarOf = (declared: TSchema): TSchema => (declared.anyOf as TSchema[] | undefined)?.find((m) => SCALARS.has(m.type)) ?? declared;

/**
 * Reads query numbers and booleans as written, naming the parameter of any that is not; returns the
 * declared scalars present, converted. For routes Elysia validates, this check runs first and Elysia
 * converts after; a route may instead read its query with `readQuery` alone (see cursorEvents.ts).
 */
export function readQuery(search: string, properties: Record<string, TSchema>, options: { refuseUnknown?: boolean } = {}): Record<string, number | boolean> {
  const values: Record<string, number | boolean> = {};
  const given = declaredValues(search, properties, options.refuseUnknown ?? false);
  for (const name in given) {
    const all = given[name]!;
    if (all.length > 1) {
      // Which one would count is not obvious (this check would read the first, Elysia the last).
      throw new ValidationError(`Invalid query parameter '${name}': given ${all.length} times; send it once`, { param: name, location: "query" });
    }
    const raw = all[0]!;
    const schema = scalarOf(properties[name]!);
    const type = schema.type as string | undefined;
    const fail = (why: string) => {
      throw new ValidationError(`Invalid query parameter '${name}': ${why}`, { param: name, location: "query" });
    };
    if (type === "integer" || type === "number") {
      if (!(type === "integer" ? INTEGER : DECIMAL).test(raw)) fail(`expected ${type === "integer" ? "an integer" : "a number"} in decimal digits, got ${JSON.stringify(raw.slice(0, 40))}`);
      const n = Number(raw);
      if (typeof schema.minimum === "number" && n < schema.minimum) fail(`must be at least ${schema.minimum}`);
      if (typeof schema.maximum === "number" && n > schema.maximum) fail(`must be at most ${schema.maximum}`);
      values[name] = n;
    } else if (type === "boolean") {
      if (raw !== "true" && raw !== "false") fail(`expected true or false, got ${JSON.stringify(raw.slice(0, 40))}`);
      values[name] = raw === "true";
    }
  }
  return values;
}

/**
 * The values of the declared parameters in a query string (`a=1&b=2`, without the `?`), decoded as
 * URLSearchParams would. Written out because polls are hot. Undeclared parameters are skipped (Elysia
 * refuses them on the routes it validates) or, with `refuseUnknown`, refused here.
 */
function declaredValues(search: string, properties: Record<string, unknown>, refuseUnknown: boolean): Record<string, string[]> {
  const found: Record<string, string[]> = {};
  for (const pair of search.split("&")) {
    if (pair.length === 0) continue;
    const eq = pair.indexOf("=");
    const name = decodeComponent(eq < 0 ? pair : pair.slice(0, eq));
    if (!Object.hasOwn(properties, name)) {
      if (refuseUnknown) throw new ValidationError(`Unknown query parameter '${name.slice(0, 100)}'`, { param: name.slice(0, 100), location: "query" });
      continue;
    }
    (found[name] ??= []).push(decodeComponent(eq < 0 ? "" : pair.slice(eq + 1)));
  }
  return found;
}

const decodeComponent = (s: string): string => {
  if (!s.includes("%") && !s.includes("+")) return s;
  try {
    return decodeURIComponent(s.replaceAll("+", " "));
  } catch {
    return new URLSearchParams(`x=${s}`).get("x")!; // malformed escapes kept as URLSearchParams keeps them
  }
};

