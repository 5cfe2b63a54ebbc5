/**
 * Requests the server makes on a client's behalf (HTTP tools): only to public addresses unless the
 * operator allows a private target, pinned to the addresses that were checked, redirects followed by
 * hand and checked hop by hop, and the reply read as a stream with a size cap.
 *
 * Pinning: the host is resolved once, every address is checked, and the connection goes to a checked
 * address (the URL's host replaced by it) while the request keeps the name: the `Host` header for
 * HTTP, and for HTTPS the SNI and the certificate check through `tls.serverName` (Bun's fetch honours
 * both). So a name whose DNS answer changes between the check and the connection (DNS rebinding)
 * cannot move the request to a private address.
 *
 * What remains: with a proxy configured in the environment (HTTP_PROXY, HTTPS_PROXY) the proxy makes
 * the connection, to the checked address; NO_PROXY then matches that address, not the host name.
 */
import { lookup } from "node:dns/promises";
import { classifyAddress, isIpAddress, type AddressClass } from "./addressPolicy.ts";

/** Which non-public targets outbound requests may reach: `*` for any, or `host` / `host:port` entries. */
export interface OutboundPolicy {
  privateAllowlist: readonly string[];
}

export const PUBLIC_ONLY: OutboundPolicy = { privateAllowlist: [] };

/** The setting that fills `privateAllowlist`, named in refusals so an operator knows what to change. */
export const ALLOWLIST_SETTING = "TOOL_PRIVATE_ALLOWLIST";

/** Resolves a host name to every address it has (tests substitute one to simulate DNS answers). */
export type ResolveHost = (host: string) => Promise<string[]>;

const systemResolve: ResolveHost = async (host) => (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);

export type OutboundFailure = "refused" | "unresolved" | "unreachable" | "too_large" | "too_many_redirects";

/** An outbound request that was refused or failed; `message` is fit to show to the model. */
export class OutboundError extends Error {
  constructor(readonly kind: OutboundFailure, message: string) {
    super(message);
    this.name = "OutboundError";
  }
}

export interface OutboundRequest {
  method: string;
  /** Sent on every hop. */
  headers: Record<string, string>;
  /**
   * Sent only to the first URL's origin, over `headers` where both name one: a redirect elsewhere
   * must not carry the app's credentials.
   */
  originHeaders?: Record<string, string>;
  body?: string;
  signal: AbortSignal;
}

export interface OutboundOptions {
  policy: OutboundPolicy;
  maxBytes: number;
  maxRedirects: number;
  resolve?: ResolveHost;
  /** Extra trusted certificates (tests with a local HTTPS server); the system's CAs otherwise. */
  ca?: string;
  /**
   * Called once with the final answer's status and headers, before its body is read: a sink it
   * returns gets each chunk of the body as it arrives (within the same byte cap), so an answer that
   * streams (an HTTP tool's NDJSON progress) can be acted on before it ends. A sink that throws stops
   * the read, and the error propagates.
   */
  onResponse?: (status: number, headers: Headers) => ((chunk: Uint8Array) => Promise<void>) | null;
}

export interface OutboundResponse {
  status: number;
  ok: boolean;
  /** The URL that answered, after redirects. */
  url: URL;
  text: string;
}

/** What a body sink threw, carried through the read untouched. */
class SinkError extends Error {
  constructor(override readonly cause: unknown) {
    super("sink failed");
  }
}

const bareHost = (url: URL): string => url.hostname.replace(/^\[|\]$/g, "");

/** Whether the operator allows this URL's host to be private. */
export function allowedPrivately(policy: OutboundPolicy, url: URL): boolean {
  const host = bareHost(url).toLowerCase();
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  return policy.privateAllowlist.some((raw) => {
    const entry = raw.toLowerCase().replace(/^\[([^\]]*)\]/, "$1");
    return entry === "*" || entry === host || entry === `${host}:${port}`;
  });
}

/**
 * Checks every address a host resolved to; returns the refusal to show, or null when all may be called.
 * One non-public address refuses the host: the connection could land on any of them.
 */
export function refusalFor(host: string, addresses: readonly string[], allowPrivate: boolean): string | null {
  if (addresses.length === 0) return `${host} has no address`;
  if (allowPrivate) return null;
  for (const address of addresses) {
    let kind: AddressClass;
    try {
      kind = classifyAddress(address);
    } catch {
      return `${host} resolved to something that is not an address (${address})`;
    }
    if (kind !== "public") {
      const named = address === host ? `the address ${address}` : `${host} (${address})`;
      return `${named} is ${article(kind)} ${kind.replace("_", "-")} address; only public addresses may be called unless the operator lists the target in ${ALLOWLIST_SETTING} (for development)`;
    }
  }
  return null;
}

const article = (kind: AddressClass) => (/^[aeiou]/.test(kind) ? "an" : "a");

/** Resolves and checks a URL's host; returns the addresses a connection may use. */
async function vet(url: URL, options: OutboundOptions, signal: AbortSignal): Promise<string[]> {
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new OutboundError("refused", "refused: only http and https URLs may be called");
  if (url.username || url.password) throw new OutboundError("refused", "refused: URLs with credentials are not called");
  const host = bareHost(url);
  let addresses: string[];
  if (isIpAddress(host)) addresses = [host];
  else {
    try {
      addresses = await abortable((options.resolve ?? systemResolve)(host), signal);
    } catch (err) {
      if (signal.aborted) throw err;
      throw new OutboundError("unresolved", `could not be reached: ${host} does not resolve`);
    }
  }
  const refusal = refusalFor(host, addresses, allowedPrivately(options.policy, url));
  if (refusal) throw new OutboundError("refused", `refused: ${refusal}`);
  return addresses;
}

/** The DNS lookup takes no signal; a timeout or cancel must still end the wait for it. */
function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Errors that mean nothing reached the server at that address, so the next address may be tried. */
const CONNECT_FAILURES = new Set(["ECONNREFUSED", "ENETUNREACH", "EHOSTUNREACH", "EADDRNOTAVAIL", "ConnectionRefused"]);

/** One request to `url`, connecting to one of its checked `addresses` in turn. */
async function pinnedFetch(url: URL, addresses: readonly string[], init: RequestInit, ca: string | undefined): Promise<Response> {
  const named = !isIpAddress(bareHost(url));
  const headers = new Headers(init.headers);
  // The name travels in the request, the connection goes to the address that was checked.
  headers.set("host", url.host);
  for (let i = 0; ; i++) {
    const address = addresses[i]!;
    const target = new URL(url);
    target.hostname = address.includes(":") ? `[${address}]` : address;
    const tls = url.protocol === "https:" && (named || ca) ? { ...(named ? { serverName: bareHost(url) } : {}), ...(ca ? { ca } : {}) } : undefined;
    try {
      return await fetch(target, { ...init, headers, redirect: "manual", ...(tls ? { tls } : {}) });
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (i + 1 < addresses.length && code && CONNECT_FAILURES.has(code) && !init.signal?.aborted) continue;
      throw err;
    }
  }
}

/** Reads a body as text, refusing it once it passes `max` bytes without reading the rest. */
async function readCapped(res: Response, max: number, sink?: ((chunk: Uint8Array) => Promise<void>) | null): Promise<string> {
  const tooLarge = () => new OutboundError("too_large", `answered more than ${max} bytes`);
  if (Number(res.headers.get("content-length") ?? "0") > max) {
    await res.body?.cancel().catch(() => {});
    throw tooLarge();
  }
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => {});
      throw tooLarge();
    }
    chunks.push(value);
    if (sink) {
      try {
        await sink(value);
      } catch (err) {
        await reader.cancel().catch(() => {});
        throw new SinkError(err);
      }
    }
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * Makes a request under the outbound policy. Throws OutboundError for a refusal or a failure the
 * caller should report; rethrows the signal's reason when it is aborted; other network errors as is.
 */
export async function guardedFetch(start: URL, request: OutboundRequest, options: OutboundOptions): Promise<OutboundResponse> {
  let url = new URL(start);
  let method = request.method;
  let body = request.body;
  for (let hop = 0; ; hop++) {
    const addresses = await vet(url, options, request.signal);
    const headers = new Headers(request.headers);
    if (url.origin === start.origin) for (const [name, value] of Object.entries(request.originHeaders ?? {})) headers.set(name, value);
    if (body === undefined) headers.delete("content-type");
    let res: Response;
    try {
      res = await pinnedFetch(url, addresses, { method, headers, ...(body !== undefined ? { body } : {}), signal: request.signal }, options.ca);
    } catch (err) {
      if (request.signal.aborted) throw request.signal.reason ?? err;
      throw new OutboundError("unreachable", `could not be reached: ${(err as Error).message}`);
    }
    const location = res.status >= 300 && res.status < 400 ? res.headers.get("location") : null;
    if (!location) {
      try {
        const sink = options.onResponse?.(res.status, res.headers) ?? null;
        return { status: res.status, ok: res.ok, url, text: await readCapped(res, options.maxBytes, sink) };
      } catch (err) {
        if (err instanceof SinkError) throw err.cause;
        if (request.signal.aborted) throw request.signal.reason ?? err;
        if (err instanceof OutboundError) throw err;
        throw new OutboundError("unreachable", `failed while answering: ${(err as Error).message}`);
      }
    }
    await res.body?.cancel().catch(() => {});
    if (hop >= options.maxRedirects) throw new OutboundError("too_many_redirects", `redirected more than ${options.maxRedirects} times`);
    url = new URL(location, url);
    // 307/308 repeat the request as it was; the others become a GET without a body.
    if (res.status !== 307 && res.status !== 308) {
      method = "GET";
      body = undefined;
    }
  }
}
