/**
 * A model connection's extra request headers: checked when set, their values sealed by the secret box
 * under the app (like the connection's `api_key`), shown by name only, opened only to build the
 * provider's client (src/llm/connections.ts).
 */
import { ValidationError } from "../core/errors.ts";
import type { SecretBox } from "../secrets/secretBox.ts";

/** At most this many headers per connection. */
export const MAX_CONNECTION_HEADERS = 20;

/**
 * Headers a connection may not set: the provider's credentials come from the connection's key or the
 * end user's credential, never from a header that would override them; and the framing and hop-by-hop
 * headers are the HTTP client's.
 */
const REFUSED = new Set([
  "authorization", "proxy-authorization", "x-api-key", "api-key", "cookie",
  "host", "content-length", "content-type", "content-encoding", "transfer-encoding", "connection", "keep-alive",
  "proxy-connection", "te", "trailer", "upgrade", "expect",
]);

/** An RFC 9110 field name. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$/;
/** A field value on one line: visible ASCII, spaces and tabs, nothing that could end the header. */
const VALUE = /^[\x20-\x7e\t]{1,4096}$/;

/** 400 naming `headers` unless every name may be set and every value fits on one header line. */
export function checkConnectionHeaders(headers: Record<string, string>): void {
  const names = Object.keys(headers);
  if (names.length > MAX_CONNECTION_HEADERS) throw new ValidationError(`At most ${MAX_CONNECTION_HEADERS} headers`, { param: "headers" });
  const seen = new Set<string>();
  for (const name of names) {
    const lower = name.toLowerCase();
    if (!TOKEN.test(name)) throw new ValidationError(`Header name "${name.slice(0, 100)}" is not a valid HTTP field name`, { param: "headers" });
    if (REFUSED.has(lower) || lower.startsWith("proxy-") || lower.startsWith("sec-")) {
      throw new ValidationError(`Header ${name} cannot be set on a connection: credentials go in api_key (or the end user's credential) and framing headers are the client's`, { param: "headers" });
    }
    if (seen.has(lower)) throw new ValidationError(`Header ${name} is given twice`, { param: "headers" });
    seen.add(lower);
    if (typeof headers[name] !== "string" || !VALUE.test(headers[name]!)) {
      throw new ValidationError(`Header ${name}: the value must be 1 to 4096 printable characters on one line`, { param: "headers" });
    }
  }
}

/** The headers with each value sealed for `appId`. */
export async function sealConnectionHeaders(box: SecretBox, appId: string, headers: Record<string, string>): Promise<Record<string, string>> {
  const sealed: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) sealed[name] = await box.seal(appId, value);
  return sealed;
}

/** The headers as the provider's client sends them: each value opened with the app. */
export async function openConnectionHeaders(box: SecretBox, appId: string, headers: Readonly<Record<string, string>> | undefined): Promise<Record<string, string>> {
  const opened: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) opened[name] = await box.open(appId, value);
  return opened;
}
