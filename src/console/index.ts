/**
 * The web console at /console: server-rendered pages for auditors (find a session, its timeline, the
 * conversation as of any event, the hash-chain check) and operators (read models with rebuilds, jobs,
 * the queue, apps and keys). A management principal logs in once with its token; the console then acts
 * for it through the management API in process (inProcessApi.ts), so it can do exactly what that
 * principal's token can, no more.
 *
 * Actions are HTML form posts (urlencoded, read as streamed bodies: the API's JSON-only rule is for
 * the API) checked for their Origin and the login's form token; the one script only confirms
 * destructive actions and follows rebuilds' progress.
 */
import { Elysia, t } from "elysia";
import { decodeJwt } from "jose";
import { timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import type { ManagementAuth, ManagementPrincipal } from "../auth/management.ts";
import { AppError, ValidationError } from "../core/errors.ts";
import { encodeCursor } from "../http/pagination.ts";
import { streamedBody, type StreamedBodyRoute } from "../http/requestGuard.ts";
import { jobStream, sessionStream } from "../domain/streams.ts";
import { href, html, type SafeHtml } from "./html.ts";
import type { InProcessApi } from "./inProcessApi.ts";
import type { ConsoleLogins } from "./logins.ts";
import { asOfPage, searchPage, SEARCH_FIELDS, timelinePage, verifyPage, type AppSummary, type AuditEvent, type Scope, type SearchField, type SessionState, type SessionSummary, type Verification } from "./pages/audit.ts";
import { layout, problem, type Section } from "./pages/layout.ts";
import { loginPage } from "./pages/login.ts";
import { appPage, appsPage, jobsPage, operatorPage, type ApiKey, type App, type JobCounts, type OperatorJob, type Projection, type Queue } from "./pages/operator.ts";
import { cookieLogin, loginCookie, pageHeaders, sameOrigin } from "./security.ts";

export interface ConsoleDeps {
  api: InProcessApi;
  logins: ConsoleLogins;
  /** Checks the token pasted at login, as the management plane checks a bearer token. */
  management: Pick<ManagementAuth, "authenticate">;
  /** The server's public address (PUBLIC_BASE_URL), also accepted as the Origin of the console's forms. */
  publicBaseUrl?: string;
}

/** The console's form posts: small urlencoded bodies, read by the routes themselves. */
export const consoleBodyRoutes = (bodyTimeoutMs: number): StreamedBodyRoute[] => [
  { method: "POST", path: /^\/console(\/|$)/, contentTypes: ["application/x-www-form-urlencoded"], maxBytes: 32 * 1024, totalTimeoutMs: Math.max(10_000, bodyTimeoutMs) },
];

/**
 * The stylesheet and script, read once: a few kilobytes, served from memory. Maps, like NOTICES, so a
 * name from the URL finds only what was put there (not `constructor` or another Object property).
 */
const ASSETS = new Map<string, { body: string; type: string }>([
  ["console.css", { body: readFileSync(new URL("./assets/console.css", import.meta.url), "utf8"), type: "text/css; charset=utf-8" }],
  ["console.js", { body: readFileSync(new URL("./assets/console.js", import.meta.url), "utf8"), type: "text/javascript; charset=utf-8" }],
]);

const NOTICES = new Map<string, string>([
  ["key_revoked", "The key was revoked: requests with it are refused from now on."],
  ["rebuild_started", "The rebuild started: its progress shows below."],
  ["logged_out", "You are logged out."],
]);

/** An id the console passes on to the API in a path: as the API spells ids, never `.` or `..`. */
const ID_PATTERN = "^[A-Za-z0-9_-][A-Za-z0-9_.:-]{0,299}$";
const ID = new RegExp(ID_PATTERN);
const Segment = t.String({ minLength: 1, maxLength: 300, pattern: ID_PATTERN });
const EVENTS_PER_PAGE = 20;
/** How many streams' chains are checked at once. */
const VERIFY_CONCURRENCY = 4;

/** What a console page or action gets: the login's principal and CSRF token, a notice to show, and (for an action) its form. */
type Handler = (args: { request: Request; principal: ManagementPrincipal; csrf: string; notice: string | null; form: URLSearchParams }) => Promise<Response>;

export function consoleRoutes(deps: ConsoleDeps) {
  const { api, logins } = deps;

  const htmlResponse = (body: SafeHtml, status = 200, headers: Record<string, string> = {}) =>
    new Response(body.value, { status, headers: { ...pageHeaders(), "content-type": "text/html; charset=utf-8", ...headers } });
  const redirect = (location: string, headers: Record<string, string> = {}) =>
    new Response(null, { status: 303, headers: { ...pageHeaders(), location, ...headers } });
  const page = (who: { principal: ManagementPrincipal; csrf: string } | null, title: string, section: Section | undefined, body: SafeHtml, notice: string | null = null, status = 200) =>
    htmlResponse(layout({ title, principal: who?.principal ?? null, csrf: who?.csrf, section, notice, body }), status);

  /**
   * Runs `handler` for a logged-in browser; anyone else goes to the login page (and comes back after).
   * An action (a POST) must also come from the console's own origin and carry the login's CSRF token.
   */
  const loggedIn = (handler: Handler) => async ({ request }: { request: Request }): Promise<Response> => {
    const login = logins.use(cookieLogin(request));
    const url = new URL(request.url);
    if (!login) return redirect(`/console/login${request.method === "GET" ? `?next=${encodeURIComponent(url.pathname + url.search)}` : ""}`);
    let form = new URLSearchParams();
    if (request.method !== "GET") {
      if (!sameOrigin(request, deps.publicBaseUrl)) return refusedOrigin();
      form = await readForm(request);
      if (!sameSecret(form.get("csrf"), login.csrf)) return refusedOrigin();
    }
    const notice = NOTICES.get(url.searchParams.get("notice") ?? "") ?? null;
    return handler({ request, principal: login.principal, csrf: login.csrf, notice, form });
  };
  const refusedOrigin = () => page(null, "Refused", undefined, html`<div class="problem" role="alert"><strong>403 cross_origin_refused</strong>
    <span>This action did not come from the console's own pages (another site, or no origin or form token): it was not carried out.</span></div>`, null, 403);

  const get = <T = any>(principal: ManagementPrincipal, request: Request, path: string) => api.call<T>(principal, request, "GET", path);
  const query = (values: Record<string, string | number | null | undefined>) => {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(values)) if (v !== undefined && v !== null && v !== "") params.set(k, String(v));
    const qs = params.toString();
    return qs ? `?${qs}` : "";
  };
  const scopeOf = (app: string, mode: string | null | undefined): Scope => ({ app, mode: mode === "test" ? "test" : "live" });
  /** An API path: the parts with a slash are the route's own, the others ids (checked by pathParams), encoded. */
  const apiPath = (...parts: string[]) => parts.map((s) => (s.includes("/") ? s : encodeURIComponent(s))).join("/");

  /** The session as the audit search has it (deleted ones too), or null when the read model does not. */
  const sessionSummary = async (principal: ManagementPrincipal, request: Request, scope: Scope, sessionId: string): Promise<SessionSummary | null> => {
    const r = await get(principal, request, `${apiPath("/v1/apps", scope.app, "audit/sessions")}${query({ session_id: sessionId, mode: scope.mode, limit: 1 })}`);
    return r.status === 200 ? (r.body.data[0] ?? null) : null;
  };

  return new Elysia({ name: "agentry.console", detail: { hide: true } })
    .get("/console/assets/:file", ({ params }) => {
      const asset = ASSETS.get(params.file);
      if (!asset) return new Response("Not found", { status: 404, headers: { "content-type": "text/plain" } });
      return new Response(asset.body, { headers: { ...pageHeaders(), "content-type": asset.type, "cache-control": "no-cache" } });
    }, { params: t.Object({ file: t.String({ maxLength: 40 }) }) })
    .get("/console", ({ request }) => redirect(logins.use(cookieLogin(request)) ? "/console/sessions" : "/console/login"))
    .get("/console/", ({ request }) => redirect(logins.use(cookieLogin(request)) ? "/console/sessions" : "/console/login"))
    .get("/console/login", ({ request }) => {
      const url = new URL(request.url);
      return page(null, "Log in", undefined, loginPage(safeNext(url.searchParams.get("next")), null), NOTICES.get(url.searchParams.get("notice") ?? "") ?? null);
    })
    .post("/console/login", async ({ request }) => {
      if (!sameOrigin(request, deps.publicBaseUrl)) return refusedOrigin();
      const form = await readForm(request);
      const next = safeNext(form.get("next"));
      const token = (form.get("token") ?? "").trim();
      const refuse = (why: string) => page(null, "Log in", undefined, loginPage(next, why), null, 401);
      if (!token) return refuse("Paste a token.");
      // Tokens are printable ASCII; anything else could not even be sent as a header.
      if (!/^[\x21-\x7e]+$/.test(token)) return refuse("That token is not valid: a token has no spaces or other special characters.");
      let principal: ManagementPrincipal;
      try {
        principal = await deps.management.authenticate(new Request("http://console.invalid/", { headers: { authorization: `Bearer ${token}` } }));
      } catch (err) {
        if (err instanceof AppError && err.status === 401) return refuse("That token is not valid: it is not the root token, or not a management JWT this server accepts (or it has expired).");
        throw err;
      }
      const login = logins.create(principal, jwtExpiry(token));
      return redirect(next, { "set-cookie": loginCookie(request, login.id, Math.floor((login.expiresAt - Date.now()) / 1000)) });
    })
    .post("/console/logout", loggedIn(async ({ request }) => {
      logins.end(cookieLogin(request));
      return redirect("/console/login?notice=logged_out", { "set-cookie": loginCookie(request, null, 0) });
    }))

    // Auditors
    .get("/console/sessions", loggedIn(async ({ request, principal, csrf, notice }) => {
      const url = new URL(request.url);
      const apps = await get<{ data: AppSummary[] }>(principal, request, "/v1/apps?limit=200");
      const appList = apps.status === 200 ? apps.body.data : [];
      // The app goes into the API path: an id, never a path of its own (`..` would reach another route).
      const app = idParam("app", url.searchParams.get("app") || null, "query")
        ?? (appList.some((a) => a.id === "app_default") ? "app_default" : appList[0]?.id ?? "app_default");
      const scope = scopeOf(app, url.searchParams.get("mode"));
      const byParam = url.searchParams.get("by");
      const field: SearchField = SEARCH_FIELDS.some(([k]) => k === byParam) ? (byParam as SearchField) : "session_id";
      const q = (url.searchParams.get("q") ?? "").trim();
      const found = await get(principal, request, `${apiPath("/v1/apps", app, "audit/sessions")}${query({ [field]: q || undefined, mode: scope.mode === "test" ? "test" : undefined, cursor: url.searchParams.get("cursor"), limit: 20 })}`);
      return page({ principal, csrf }, "Sessions", "sessions", searchPage({
        apps: appList, scope, field, q,
        results: found.status === 200 ? found.body : null,
        problem: found.status === 200 ? (apps.status === 200 ? null : problem(apps.status, apps.body)) : problem(found.status, found.body),
      }), notice);
    }))
    .get("/console/apps/:app/sessions/:session", loggedIn(async ({ request, principal, csrf, notice }) => {
      const { app, session } = pathParams(request, ["app", "session"]);
      const url = new URL(request.url);
      const scope = scopeOf(app, url.searchParams.get("mode"));
      const offset = nonNegative(url.searchParams.get("n"));
      const [events, summary] = await Promise.all([
        get(principal, request, `${apiPath("/v1/apps", app, "audit/sessions", session, "events")}${query({ limit: EVENTS_PER_PAGE, cursor: url.searchParams.get("cursor"), mode: scope.mode === "test" ? "test" : undefined })}`),
        sessionSummary(principal, request, scope, session),
      ]);
      return page({ principal, csrf }, `Session ${session}`, "sessions", timelinePage({
        scope, sessionId: session, session: summary, offset,
        events: events.status === 200 ? (events.body.data as AuditEvent[]) : [], nextCursor: events.status === 200 ? events.body.next_cursor : null,
        problem: events.status === 200 ? null : problem(events.status, events.body), csrf,
      }), notice, events.status === 200 ? 200 : events.status);
    }))
    .get("/console/apps/:app/sessions/:session/as-of", loggedIn(async ({ request, principal, csrf, notice }) => {
      const { app, session } = pathParams(request, ["app", "session"]);
      const url = new URL(request.url);
      const scope = scopeOf(app, url.searchParams.get("mode"));
      const at = url.searchParams.get("at") || null;
      const n = url.searchParams.has("n") ? nonNegative(url.searchParams.get("n")) || null : null;
      const modeQ = scope.mode === "test" ? "test" : undefined;
      const state = await get<SessionState>(principal, request, `${apiPath("/v1/apps", app, "audit/sessions", session, "state")}${query({ at: at ?? undefined, mode: modeQ })}`);
      // The event after this one, to step through the history; only a position says where "after" is.
      let next: { position: string; type: string } | null = null;
      const position = at !== null && /^\d{1,30}$/.test(at) ? at : null;
      if (state.status === 200 && position !== null) {
        const after = await get(principal, request, `${apiPath("/v1/apps", app, "audit/sessions", session, "events")}${query({ limit: 1, cursor: encodeCursor({ p: position }), mode: modeQ })}`);
        const e = after.status === 200 ? (after.body.data[0] as AuditEvent | undefined) : undefined;
        if (e) next = { position: e.position, type: e.type };
      }
      return page({ principal, csrf }, `Session ${session} as of ${at ?? "now"}`, "sessions", asOfPage({
        scope, sessionId: session, at, n, next,
        state: state.status === 200 ? state.body : null, problem: state.status === 200 ? null : problem(state.status, state.body), csrf,
      }), notice, state.status === 200 ? 200 : state.status);
    }))
    .post("/console/apps/:app/sessions/:session/verify", loggedIn(async ({ request, principal, csrf, form }) => {
      const { app, session } = pathParams(request, ["app", "session"]);
      const scope = scopeOf(app, form.get("mode"));
      const modeQ = scope.mode === "test" ? "test" : undefined;
      // Its streams: the session's own and its jobs' (from the replay, which needs no read model).
      const state = await get<SessionState>(principal, request, `${apiPath("/v1/apps", app, "audit/sessions", session, "state")}${query({ mode: modeQ })}`);
      if (state.status !== 200) {
        return page({ principal, csrf }, `Verify ${session}`, "sessions", verifyPage({ scope, sessionId: session, session: null, results: [], problem: problem(state.status, state.body), csrf }), null, state.status);
      }
      const streams = [sessionStream(session), ...[...state.body.jobs].reverse().map((j) => jobStream(j.id))];
      const results: Verification[] = [];
      let failure: SafeHtml | null = null;
      for (let i = 0; i < streams.length; i += VERIFY_CONCURRENCY) {
        const answers = await Promise.all(streams.slice(i, i + VERIFY_CONCURRENCY).map((s) =>
          get<Verification>(principal, request, `${apiPath("/v1/apps", app, "audit/streams", s, "verify")}${query({ mode: modeQ })}`)));
        for (const a of answers) {
          if (a.status === 200) results.push(a.body);
          else failure ??= problem(a.status, a.body);
        }
      }
      const summary = state.body.session ? { ...state.body.session, deleted: state.body.deleted } : null;
      return page({ principal, csrf }, `Verify ${session}`, "sessions", verifyPage({ scope, sessionId: session, session: summary, results, problem: failure, csrf }));
    }))

    // Operators
    .get("/console/operator", loggedIn(async ({ request, principal, csrf, notice }) => {
      const [projections, jobs, queue] = await Promise.all([
        get<{ data: Projection[] }>(principal, request, "/v1/admin/projections"),
        get<JobCounts>(principal, request, "/v1/admin/jobs/counts"),
        get<Queue>(principal, request, "/v1/admin/queue"),
      ]);
      const problems = [projections, jobs, queue].filter((r) => r.status !== 200).map((r) => problem(r.status, r.body));
      return page({ principal, csrf }, "Operator", "operator", operatorPage({
        projections: projections.status === 200 ? projections.body.data : null,
        jobs: jobs.status === 200 ? jobs.body : null, queue: queue.status === 200 ? queue.body : null,
        problems: problems.slice(0, 1), csrf,
      }), notice);
    }))
    .post("/console/projections/:name/rebuild", loggedIn(async ({ request, principal, csrf, form }) => {
      const { name } = pathParams(request, ["name"]);
      const r = await api.call(principal, request, "POST", apiPath("/v1/admin/projections", name, "rebuild"));
      if (r.status === 202 || r.status === 200) return redirect(`/console/operator?notice=rebuild_started#projection-${encodeURIComponent(name)}`);
      return page({ principal, csrf }, "Operator", "operator", html`<h1>Operator</h1>${problem(r.status, r.body)}<p><a class="button" href="/console/operator">Back to the read models</a></p>`, null, r.status);
    }))
    // What the operator page's script polls while a rebuild runs: the API's answer as it is.
    .get("/console/projections/:name/rebuild", async ({ request, params }) => {
      const login = logins.use(cookieLogin(request));
      const headers = { ...pageHeaders(), "content-type": "application/json" };
      if (!login) return new Response(JSON.stringify({ error: { code: "login_required", message: "Log in to the console again" } }), { status: 401, headers });
      const r = await get(login.principal, request, apiPath("/v1/admin/projections", params.name, "rebuild"));
      return new Response(JSON.stringify(r.body), { status: r.status, headers });
    }, { params: t.Object({ name: Segment }) })
    .get("/console/jobs", loggedIn(async ({ request, principal, csrf, notice }) => {
      const url = new URL(request.url);
      const status = url.searchParams.get("status") || null;
      const r = await get<{ data: OperatorJob[]; next_cursor: string | null }>(principal, request, `/v1/admin/jobs${query({ status, cursor: url.searchParams.get("cursor"), limit: 50 })}`);
      return page({ principal, csrf }, "Jobs", "jobs", jobsPage({
        status, jobs: r.status === 200 ? r.body.data : [], nextCursor: r.status === 200 ? r.body.next_cursor : null,
        problem: r.status === 200 ? null : problem(r.status, r.body),
      }), notice, r.status === 200 ? 200 : r.status);
    }))
    .get("/console/apps", loggedIn(async ({ request, principal, csrf, notice }) => {
      const url = new URL(request.url);
      const r = await get<{ data: App[]; next_cursor: string | null }>(principal, request, `/v1/apps${query({ limit: 50, cursor: url.searchParams.get("cursor") })}`);
      return page({ principal, csrf }, "Apps", "apps", appsPage({
        apps: r.status === 200 ? r.body.data : [], nextCursor: r.status === 200 ? r.body.next_cursor : null,
        problem: r.status === 200 ? null : problem(r.status, r.body),
      }), notice);
    }))
    .get("/console/apps/:app", loggedIn(async ({ request, principal, csrf, notice }) => {
      const { app } = pathParams(request, ["app"]);
      const [info, keys] = await Promise.all([
        get<App>(principal, request, apiPath("/v1/apps", app)),
        get<{ data: ApiKey[] }>(principal, request, apiPath("/v1/apps", app, "keys")),
      ]);
      const failed = [info, keys].find((r) => r.status !== 200);
      return page({ principal, csrf }, `App ${app}`, "apps", appPage({
        appId: app, app: info.status === 200 ? info.body : null, keys: keys.status === 200 ? keys.body.data : [],
        problem: failed ? problem(failed.status, failed.body) : null, csrf,
      }), notice, failed ? failed.status : 200);
    }))
    .post("/console/apps/:app/keys/:key/revoke", loggedIn(async ({ request, principal, csrf, form }) => {
      const { app, key } = pathParams(request, ["app", "key"]);
      const r = await api.call(principal, request, "POST", apiPath("/v1/apps", app, "keys", key, "revoke"));
      if (r.status === 200) return redirect(`${href(["apps", app])}?notice=key_revoked`);
      return page({ principal, csrf }, `App ${app}`, "apps", html`<h1>Revoke a key</h1>${problem(r.status, r.body)}<p><a class="button" href="${href(["apps", app])}">Back to the app</a></p>`, null, r.status);
    }));
}

/** The named path parameters of a console route, each checked to be an id the API spells (400 otherwise). */
function pathParams<K extends string>(request: Request, names: K[]): Record<K, string> {
  const path = new URL(request.url).pathname.split("/").slice(2); // after "/console"
  const values: Record<string, string> = {};
  // The routes' shapes: apps/:app[/sessions/:session[/…]|/keys/:key/revoke], projections/:name/rebuild.
  const positions: Record<string, number> = { app: 1, session: 3, key: 3, name: 1 };
  for (const name of names) {
    let value: string;
    try {
      value = decodeURIComponent(path[positions[name]!] ?? "");
    } catch {
      value = "";
    }
    values[name] = idParam(name, value, "params")!;
  }
  return values as Record<K, string>;
}

/** A parameter that names an id the API spells (null when absent); 400 for anything else. */
function idParam(name: string, value: string | null, location: "params" | "query"): string | null {
  if (value === null) return null;
  if (!ID.test(value)) throw new ValidationError(`Invalid ${location === "params" ? "path" : "query"} parameter '${name}'`, { param: name, location });
  return value;
}

/**
 * Where to go after logging in: a console page, never another site. It becomes the Location header, so
 * only URL characters go through: controls, spaces, backslashes, `#` and raw non-ASCII (which would make
 * that header malformed) send the login to the sessions page instead; the few printable ones a browser
 * may leave unencoded in a query (`|`, `{`, …) are percent-encoded. It must also be normal already: no
 * `//`, and no `.`/`..` segment (even percent-encoded) that a browser would resolve outside /console.
 */
function safeNext(given: string | null | undefined): string {
  const fallback = "/console/sessions";
  if (!given || given.length > 2000 || !/^[\x21-\x7e]+$/.test(given) || /[\\#]/.test(given)) return fallback;
  const next = given.replace(/["<>[\]^`{|}]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  if (!/^\/console(\/[A-Za-z0-9._~%!$&'()*+,;=:@\/-]*)?(\?[A-Za-z0-9._~%!$&'()*+,;=:@\/?-]*)?$/.test(next)) return fallback;
  if (next.includes("//")) return fallback;
  let resolved: URL;
  try {
    resolved = new URL(next, "http://console.invalid");
  } catch {
    return fallback;
  }
  const path = next.split("?", 1)[0]!;
  return resolved.pathname === path ? next : fallback;
}

/** A JWT's `exp` in ms since the epoch (it was verified before this is read); undefined for a root token. */
function jwtExpiry(token: string): number | undefined {
  if (token.split(".").length !== 3) return undefined;
  try {
    const exp = decodeJwt(token).exp;
    return typeof exp === "number" ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

const nonNegative = (value: string | null): number => {
  const n = Number(value);
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
};

/** A form post's fields (urlencoded), read within the declared limits (see consoleBodyRoutes). */
async function readForm(request: Request): Promise<URLSearchParams> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of streamedBody(request)) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

/**
 * Whether a form's token is the login's, compared in constant time. The byte lengths are compared
 * first (timingSafeEqual throws on unequal ones): a string of the same length in characters may be
 * longer in UTF-8.
 */
function sameSecret(given: string | null, expected: string): boolean {
  if (given === null) return false;
  const a = Buffer.from(given, "utf8");
  const b = Buffer.from(expected, "utf8");
  return a.length === b.length && timingSafeEqual(a, b);
}
