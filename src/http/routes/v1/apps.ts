/**
 * /v1/apps: the management plane — apps (tenants) and their API keys. Separate from the data plane:
 * it takes the operator's root token or a management JWT (see src/auth/management.ts), never a data
 * key. A principal manages the apps its token names, with its role: members read, admins also change
 * an app and its keys, owners also create and delete apps.
 */
import { Elysia, t } from "elysia";
import type { AppContext } from "../../../app/context.ts";
import type { TenantDirectory } from "../../../app/tenantDirectory.ts";
import { ForbiddenError, NotFoundError, ValidationError } from "../../../core/errors.ts";
import { isKeyUserId } from "../../../app/keyUsers.ts";
import { newResourceId } from "../../../core/ids.ts";
import { connectionOf, type ApiKeyRecord, type AppState, type Connection, type NewKey } from "../../../domain/app/app.ts";
import { lookup } from "node:dns/promises";
import { allowedPrivately, refusalFor } from "../../../net/outbound.ts";
import { isIpAddress } from "../../../net/addressPolicy.ts";
import { KEY_SCOPES } from "../../../domain/app/events.ts";
import { keyHash, keyPrefix, newApiKey } from "../../../domain/app/keys.ts";
import { decodeCursor, encodeCursor, PageQuery } from "../../pagination.ts";
import { IdParam, metaOf, type ResponseSet } from "./common.ts";
import { v1Models } from "./models.ts";
import type { ManagementPrincipal } from "../../../auth/management.ts";
import type { KeyUsage } from "../../../app/keyUsage.ts";
import { checkConnectionHeaders, sealConnectionHeaders } from "../../../llm/connectionHeaders.ts";


export interface AppRoutesDeps {
  ctx: AppContext;
  directory: TenantDirectory;
  /** This process's notes of key use, shown when newer than the recorded one. */
  usage?: Pick<KeyUsage, "noted">;
  /** The management principal of an authenticated request. */
  principalOf(request: Request): ManagementPrincipal | undefined;
}

const RANK = { member: 1, admin: 2, owner: 3 } as const;

function authenticated(principal: ManagementPrincipal | undefined): ManagementPrincipal {
  if (!principal) throw new ForbiddenError("The management plane takes the root token or a management JWT", "permission_denied");
  return principal;
}

/** 403 unless the principal has at least `role` on `appId` (or on every app, for `appId` null). */
export function requireRole(given: ManagementPrincipal | undefined, role: keyof typeof RANK, appId: string | null): ManagementPrincipal {
  const principal = authenticated(given);
  const covers = principal.apps === "all" || (appId !== null && principal.apps.includes(appId));
  if (!covers || RANK[principal.role] < RANK[role]) {
    throw new ForbiddenError(`This token may not ${role === "member" ? "read" : "change"} ${appId ? `app ${appId}` : "apps"}`, "permission_denied");
  }
  return principal;
}

const appView = (id: string, app: AppState) => ({
  id, object: "app" as const, name: app.name, status: app.status as "active" | "suspended",
  key_count: app.keys.filter((k) => !k.revoked).length,
});

const keyView = (k: ApiKeyRecord, noted: number | null = null) => ({
  id: k.key_id, object: "api_key" as const, name: k.name, prefix: k.prefix, mode: k.mode, scopes: k.scopes,
  agent_ids: k.agent_ids, user_id: k.user_id, expires_at: k.expires_at === null ? null : new Date(k.expires_at).toISOString(),
  valid_until: k.refused_after === null ? null : new Date(k.refused_after).toISOString(), revoked: k.revoked,
  last_used_at: (() => {
    const at = Math.max(k.last_used_at ?? 0, noted ?? 0);
    return at > 0 ? new Date(at).toISOString() : null;
  })(),
});

const App = t.Object({ id: t.String(), object: t.Literal("app"), name: t.String(), status: t.Union([t.Literal("active"), t.Literal("suspended")]), key_count: t.Integer() });
const ApiKey = t.Object({
  id: t.String(), object: t.Literal("api_key"), name: t.String(), prefix: t.String(), mode: t.Union([t.Literal("live"), t.Literal("test")]),
  scopes: t.Array(t.String()), agent_ids: t.Union([t.Array(t.String()), t.Null()]), user_id: t.Union([t.String(), t.Null()]),
  expires_at: t.Union([t.String(), t.Null()]), valid_until: t.Union([t.String(), t.Null()]), revoked: t.Boolean(),
  last_used_at: t.Union([t.String(), t.Null()], { description: "When it was last used (recorded to within about an hour; this server's own uses at once)" }),
});
const IssuedKey = t.Composite([ApiKey, t.Object({ key: t.String({ description: "The key itself: shown this once, never again" }) })]);
const AppPage = t.Object({ data: t.Array(App), has_more: t.Boolean(), next_cursor: t.Union([t.String(), t.Null()]) });
const KeyList = t.Object({ data: t.Array(ApiKey) });
const AppDeleted = t.Object({ id: t.String(), object: t.Literal("app"), deleted: t.Literal(true) });
const ConnectionView = t.Object({
  name: t.String(), object: t.Literal("connection"), provider: t.Union([t.Literal("openai"), t.Literal("anthropic"), t.Literal("openai_compatible")]),
  base_url: t.Union([t.String(), t.Null()]), default_model: t.Union([t.String(), t.Null()]),
  has_key: t.Boolean(), last4: t.Union([t.String(), t.Null()], { description: "The key's last 4 characters (long keys only); the key itself is never shown" }),
  headers: t.Array(t.String(), { description: "The names of the extra headers sent to the provider; their values are never shown" }),
  oauth: t.Union([t.Object({ token_url: t.String(), client_id: t.Union([t.String(), t.Null()]), has_client_secret: t.Boolean() }), t.Null()], {
    description: "Where end users' OAuth credentials are refreshed (BYOS); the client secret is never shown",
  }),
  embeddings_model: t.Union([t.String(), t.Null()], { description: "The model that embeds the app's memory for hybrid ranking, or null" }),
});
const ConnectionList = t.Object({ data: t.Array(ConnectionView) });
const ConnectionRemoved = t.Object({ name: t.String(), object: t.Literal("connection"), deleted: t.Literal(true) });
const ConnectionParams = t.Object({ app_id: t.String({ maxLength: 100 }), name: t.String({ pattern: "^[a-z0-9][a-z0-9_-]{0,62}$" }) });

const KeyBody = t.Object({
  name: t.String({ minLength: 1, maxLength: 200 }),
  mode: t.Optional(t.Union([t.Literal("live"), t.Literal("test")], { default: "live" })),
  scopes: t.Optional(t.Array(t.Union(KEY_SCOPES.map((s) => t.Literal(s))), { minItems: 1, uniqueItems: true })),
  agent_ids: t.Optional(t.Array(t.String({ minLength: 1, maxLength: 100 }), { minItems: 1, maxItems: 100, uniqueItems: true })),
  user_id: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
  expires_at: t.Optional(t.String({ format: "date-time", description: "ISO 8601; the key is refused from then on" })),
});

/** A connection as answers show it: whether it has a key and, for a long one, its last 4 characters. */
const connectionView = (c: Connection, key: string | null) => ({
  name: c.name, object: "connection" as const, provider: c.provider, base_url: c.base_url, default_model: c.default_model,
  has_key: c.api_key !== null, last4: key !== null && key.length >= 12 ? key.slice(-4) : null,
  headers: Object.keys(c.headers ?? {}),
  oauth: c.oauth ? { token_url: c.oauth.token_url, client_id: c.oauth.client_id, has_client_secret: c.oauth.client_secret !== null } : null,
  embeddings_model: c.embeddings_model ?? null,
});

/**
 * 400 unless `url`'s host resolves only to public addresses (or is allowed privately, as for HTTP
 * tools): a connection's client calls it from inside the server's network.
 */
async function requireCallable(url: string, privateAllowlist: readonly string[], param = "base_url"): Promise<void> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ValidationError(`${param} is not a URL`, { param });
  }
  // Secrets have sealed places (api_key, headers, oauth.client_secret); a URL is stored and shown as written.
  if (parsed.username || parsed.password) throw new ValidationError(`${param} may not carry a user name or password: put credentials in api_key or headers`, { param });
  const host = parsed.hostname.replace(/^\[|\]$/g, "");
  const allowPrivate = allowedPrivately({ privateAllowlist }, parsed);
  // Bounded: a slow resolver answers "no address" rather than hold the request.
  const resolved = lookup(host, { all: true }).then((r) => r.map((a) => a.address)).catch(() => [] as string[]);
  const addresses = isIpAddress(host) ? [host] : await Promise.race([resolved, Bun.sleep(3000).then(() => [] as string[])]);
  const refusal = refusalFor(host, addresses, allowPrivate);
  if (refusal) throw new ValidationError(`${param} cannot be used: ${refusal}`, { param });
}

/** An RFC 3339 date-time whose day exists (`2099-02-30…` is not rolled over into March). */
export function isCalendarDateTime(value: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.exec(value);
  if (!m) return false;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const date = new Date(Date.UTC(year, month - 1, day));
  return date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

/** A new key and what is kept of it. */
function mintKey(body: typeof KeyBody.static): { secret: string; record: NewKey } {
  // Agents belong to the whole app: a key acting as one user may not change them.
  if (body.user_id !== undefined && isKeyUserId(body.user_id)) {
    throw new ValidationError("user_id may not be spelled as an API key's own user (magus-key_…, mosoo-key_…, muapi-key_…)", { param: "user_id" }, "reserved_user_id");
  }
  if (body.user_id !== undefined && body.scopes?.includes("agents:manage")) {
    throw new ValidationError("A key bound to a user cannot have agents:manage", { param: "scopes" });
  }
  // Audit reads show the whole app: a key limited to a user or to some agents would see past its limits.
  if ((body.user_id !== undefined || body.agent_ids !== undefined) && body.scopes?.includes("audit:read")) {
    throw new ValidationError("A key bound to a user or limited to agents cannot have audit:read", { param: "scopes" });
  }
  if (body.expires_at !== undefined && !(isCalendarDateTime(body.expires_at) && Date.parse(body.expires_at) > Date.now())) {
    throw new ValidationError("expires_at must be an ISO 8601 date-time (with time and zone) in the future", { param: "expires_at" });
  }
  const mode = body.mode ?? "live";
  const secret = newApiKey(mode);
  return {
    secret,
    record: {
      key_id: newResourceId("key"), name: body.name, prefix: keyPrefix(secret), hash: keyHash(secret), mode,
      scopes: body.scopes ?? ["data:read", "data:write"], agent_ids: body.agent_ids ?? null, user_id: body.user_id ?? null,
      expires_at: body.expires_at === undefined ? null : Date.parse(body.expires_at),
    },
  };
}

/** The app as this process knows it (its own writes folded in once waited for); 404 for none or deleted. */
export const liveAppIn = (directory: Pick<TenantDirectory, "app">) => (appId: string): AppState => {
  const app = directory.app(appId);
  if (!app || app.status === "none" || app.status === "deleted") throw new NotFoundError("App not found", { param: "app_id" }, "app_not_found");
  return app;
};

export const appRoutes = ({ ctx, directory, principalOf, usage }: AppRoutesDeps) => {
  const liveApp = liveAppIn(directory);
  const settle = async (position: bigint | null) => {
    if (position !== null) await directory.waitFor(position);
  };
  const meta = (request: Request, principal: ManagementPrincipal, appId: string) => ({ ...metaOf(ctx, request), appId, actor: `${principal.kind}:${principal.subject}` });
  const created = (set: ResponseSet) => {
    set.status = 201;
  };

  return new Elysia({ name: "agentry.v1.apps", prefix: "/v1/apps", detail: { tags: ["Apps"], security: [{ managementToken: [] }] } })
    .use(v1Models)
    .model({ App, AppPage, ApiKey, IssuedKey, KeyList, AppDeleted, ConnectionView, ConnectionList, ConnectionRemoved })
    .post("", async ({ body, request, set }) => {
      const principal = requireRole(principalOf(request), "owner", null);
      const appId = newResourceId("app");
      const r = await ctx.repos.apps.handle(appId, { type: "CreateApp", app_id: appId, name: body.name }, meta(request, principal, appId));
      await settle(r.position);
      created(set);
      return appView(appId, liveApp(appId));
    }, {
      body: t.Object({ name: t.String({ minLength: 1, maxLength: 200 }) }), response: { 201: "App" },
      detail: { summary: "Create an app (owners)" },
    })
    .get("", ({ query, request }) => {
      const principal = authenticated(principalOf(request)); // each sees the apps its token names
      const limit = query.limit ?? 20;
      const after = decodeCursor(query.cursor, { id: "string" })?.id;
      const visible = [...directory.allApps()]
        .filter(([id, app]) => app.status !== "deleted" && app.status !== "none" && (principal.apps === "all" || principal.apps.includes(id)))
        .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))
        .filter(([id]) => after === undefined || id > after);
      const shown = visible.slice(0, limit);
      const hasMore = visible.length > limit;
      return { data: shown.map(([id, app]) => appView(id, app)), has_more: hasMore, next_cursor: hasMore ? encodeCursor({ id: shown[shown.length - 1]![0] }) : null };
    }, { query: t.Object(PageQuery), response: "AppPage", detail: { summary: "The apps this token may see, by id" } })
    .get("/:app_id", ({ params, request }) => {
      requireRole(principalOf(request), "member", params.app_id);
      return appView(params.app_id, liveApp(params.app_id));
    }, { params: IdParam("app_id"), response: "App", detail: { summary: "Get an app" } })
    .patch("/:app_id", async ({ params, body, request }) => {
      const principal = requireRole(principalOf(request), "admin", params.app_id);
      liveApp(params.app_id);
      const commands = [
        ...(body.name !== undefined ? [{ type: "RenameApp" as const, name: body.name }] : []),
        ...(body.status === "suspended" ? [{ type: "SuspendApp" as const, reason: body.reason ?? null }] : []),
        ...(body.status === "active" ? [{ type: "ResumeApp" as const }] : []),
      ];
      const r = await ctx.repos.apps.handle(params.app_id, commands, meta(request, principal, params.app_id));
      await settle(r.position);
      return appView(params.app_id, liveApp(params.app_id));
    }, {
      params: IdParam("app_id"), response: "App",
      body: t.Object({
        name: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
        status: t.Optional(t.Union([t.Literal("active"), t.Literal("suspended")], { description: "suspended: every key of the app is refused with 403 app_suspended" })),
        reason: t.Optional(t.String({ maxLength: 500 })),
      }),
      detail: { summary: "Rename, suspend or resume an app (admins)" },
    })
    .delete("/:app_id", async ({ params, request }) => {
      const principal = requireRole(principalOf(request), "owner", params.app_id);
      liveApp(params.app_id);
      const r = await ctx.repos.apps.handle(params.app_id, { type: "DeleteApp" }, meta(request, principal, params.app_id));
      await settle(r.position);
      return { id: params.app_id, object: "app" as const, deleted: true as const };
    }, {
      params: IdParam("app_id"), response: "AppDeleted",
      detail: { summary: "Delete an app (owners): its keys stop working; its data stays in the event store for audit" },
    })
    .post("/:app_id/keys", async ({ params, body, request, set }) => {
      const principal = requireRole(principalOf(request), "admin", params.app_id);
      liveApp(params.app_id);
      const { secret, record } = mintKey(body);
      const r = await ctx.repos.apps.handle(params.app_id, { type: "IssueKey", key: record }, meta(request, principal, params.app_id));
      await settle(r.position);
      created(set);
      return { ...keyView(liveApp(params.app_id).keys.find((k) => k.key_id === record.key_id)!), key: secret };
    }, {
      params: IdParam("app_id"), body: KeyBody, response: { 201: "IssuedKey" },
      detail: { summary: "Issue an API key (admins); the key is in this answer only" },
    })
    .get("/:app_id/keys", ({ params, request }) => {
      requireRole(principalOf(request), "member", params.app_id);
      return { data: liveApp(params.app_id).keys.map((k) => keyView(k, usage?.noted(k.key_id) ?? null)) };
    }, { params: IdParam("app_id"), response: "KeyList", detail: { summary: "An app's keys (never the keys themselves)" } })
    .post("/:app_id/keys/:key_id/revoke", async ({ params, request }) => {
      const principal = requireRole(principalOf(request), "admin", params.app_id);
      liveApp(params.app_id);
      const r = await ctx.repos.apps.handle(params.app_id, { type: "RevokeKey", key_id: params.key_id }, meta(request, principal, params.app_id));
      await settle(r.position);
      return keyView(liveApp(params.app_id).keys.find((k) => k.key_id === params.key_id)!);
    }, {
      params: t.Object({ app_id: t.String({ maxLength: 100 }), key_id: t.String({ maxLength: 100 }) }), response: "ApiKey",
      detail: { summary: "Revoke a key at once" },
    })
    .post("/:app_id/keys/:key_id/rotate", async ({ params, body, request, set }) => {
      const principal = requireRole(principalOf(request), "admin", params.app_id);
      const old = liveApp(params.app_id).keys.find((k) => k.key_id === params.key_id);
      if (!old) throw new NotFoundError("API key not found", { param: "key_id" }, "key_not_found");
      const { secret, record } = mintKey({
        name: body?.name ?? old.name, mode: old.mode, scopes: [...old.scopes] as typeof KEY_SCOPES[number][],
        ...(old.agent_ids ? { agent_ids: [...old.agent_ids] } : {}), ...(old.user_id ? { user_id: old.user_id } : {}),
      });
      record.expires_at = old.expires_at; // the same rights, the same end
      const now = Date.now();
      const graceUntil = now + (body?.grace_s ?? 0) * 1000;
      const r = await ctx.repos.apps.handle(params.app_id, { type: "RotateKey", key_id: params.key_id, replacement: record, grace_until: graceUntil, now }, meta(request, principal, params.app_id));
      await settle(r.position);
      created(set);
      return { ...keyView(liveApp(params.app_id).keys.find((k) => k.key_id === record.key_id)!), key: secret };
    }, {
      params: t.Object({ app_id: t.String({ maxLength: 100 }), key_id: t.String({ maxLength: 100 }) }), response: { 201: "IssuedKey" },
      body: t.Optional(t.Object({
        grace_s: t.Optional(t.Integer({ minimum: 0, maximum: 30 * 24 * 3600, description: "How long the old key keeps working (default 0: at once)" })),
        name: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
      })),
      detail: { summary: "Rotate a key: a new key with the same rights; the old one works for grace_s more seconds" },
    })
    .put("/:app_id/connections/:name", async ({ params, body, request }) => {
      const principal = requireRole(principalOf(request), "admin", params.app_id);
      liveApp(params.app_id);
      const baseUrl = body.base_url ?? null;
      if (baseUrl !== null) await requireCallable(baseUrl, ctx.outbound?.privateAllowlist ?? []);
      if (body.provider === "openai_compatible" && baseUrl === null) throw new ValidationError("An openai_compatible connection needs base_url", { param: "base_url" });
      const headers = body.headers ?? {};
      checkConnectionHeaders(headers);
      if (body.oauth) await requireCallable(body.oauth.token_url, ctx.outbound?.privateAllowlist ?? [], "oauth.token_url");
      if (body.embeddings_model !== undefined && body.provider === "anthropic") {
        throw new ValidationError("Anthropic offers no embeddings endpoint: set embeddings_model on an openai or openai_compatible connection", { param: "embeddings_model" });
      }
      const connection: Connection = {
        name: params.name, provider: body.provider, base_url: baseUrl, default_model: body.default_model ?? null,
        // Write-only: sealed for the app before it is decided, so no event ever holds it in clear.
        api_key: body.api_key ? await ctx.secrets.seal(params.app_id, body.api_key) : null,
        ...(Object.keys(headers).length ? { headers: await sealConnectionHeaders(ctx.secrets, params.app_id, headers) } : {}),
        ...(body.oauth ? { oauth: {
          token_url: body.oauth.token_url, client_id: body.oauth.client_id ?? null,
          client_secret: body.oauth.client_secret ? await ctx.secrets.seal(params.app_id, body.oauth.client_secret) : null,
        } } : {}),
        ...(body.embeddings_model !== undefined ? { embeddings_model: body.embeddings_model } : {}),
      };
      const r = await ctx.repos.apps.handle(params.app_id, { type: "SetConnection", connection }, meta(request, principal, params.app_id));
      await settle(r.position);
      return connectionView(connection, body.api_key ?? null);
    }, {
      params: ConnectionParams, response: "ConnectionView",
      body: t.Object({
        provider: t.Union([t.Literal("openai"), t.Literal("anthropic"), t.Literal("openai_compatible")]),
        base_url: t.Optional(t.String({ pattern: "^https?://", maxLength: 2048 })),
        api_key: t.Optional(t.String({ minLength: 1, maxLength: 4096, description: "Write-only: stored sealed, never shown again" })),
        default_model: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
        headers: t.Optional(t.Record(t.String(), t.String({ maxLength: 4096 }), {
          description: "Extra headers sent with every request to the provider (an organisation, a gateway's key). Write-only values, stored sealed; " +
            "credential and framing headers (Authorization, x-api-key, Host, Content-Length, …) are refused.",
        })),
        oauth: t.Optional(t.Object({
          token_url: t.String({ pattern: "^https?://", maxLength: 2048, description: "The OAuth 2.0 token endpoint end users' refresh tokens are sent to" }),
          client_id: t.Optional(t.String({ minLength: 1, maxLength: 500 })),
          client_secret: t.Optional(t.String({ minLength: 1, maxLength: 4096, description: "Write-only: stored sealed, never shown again" })),
        }, { description: "For agents billed to their end users (BYOS): how those users' OAuth credentials are refreshed" })),
        embeddings_model: t.Optional(t.String({
          minLength: 1, maxLength: 200,
          description: "An embeddings model served at this connection's /embeddings (OpenAI wire format): the app's memory is then ranked hybrid, BM25 with cosine similarity",
        })),
      }),
      detail: { summary: "Create or replace a model connection (admins); agents name it in model.connection" },
    })
    .get("/:app_id/connections", async ({ params, request }) => {
      requireRole(principalOf(request), "member", params.app_id);
      const connections = Object.values(liveApp(params.app_id).connections);
      return { data: await Promise.all(connections.map(async (c) => connectionView(c, await openedKey(params.app_id, c)))) };
    }, { params: IdParam("app_id"), response: "ConnectionList", detail: { summary: "An app's model connections (never their keys)" } })
    .get("/:app_id/connections/:name", async ({ params, request }) => {
      requireRole(principalOf(request), "member", params.app_id);
      const connection = connectionOf(liveApp(params.app_id).connections, params.name);
      if (!connection) throw new NotFoundError("Connection not found", { param: "name" }, "connection_not_found");
      return connectionView(connection, await openedKey(params.app_id, connection));
    }, { params: ConnectionParams, response: "ConnectionView", detail: { summary: "Get a model connection (has_key and last4, never the key)" } })
    .delete("/:app_id/connections/:name", async ({ params, request }) => {
      const principal = requireRole(principalOf(request), "admin", params.app_id);
      liveApp(params.app_id);
      const r = await ctx.repos.apps.handle(params.app_id, { type: "RemoveConnection", name: params.name }, meta(request, principal, params.app_id));
      await settle(r.position);
      return { name: params.name, object: "connection" as const, deleted: true as const };
    }, { params: ConnectionParams, response: "ConnectionRemoved", detail: { summary: "Remove a model connection; agents naming it fail their turns until changed" } });

  /** The connection's key, opened to show its last 4 characters (never more of it). */
  async function openedKey(appId: string, connection: Connection): Promise<string | null> {
    if (!connection.api_key) return null;
    return ctx.secrets.open(appId, connection.api_key).catch(() => null);
  }
};
