/** A session's assets: registered with labels asset_N numbered atomically, and listed. */
import { Elysia, t } from "elysia";
import type { SessionEvent } from "../../../../domain/session/session.ts";
import { listAssets, type AssetRow } from "../../../../../projections/assets/index.ts";
import { decodeCursor, page, PageQuery } from "../../../pagination.ts";
import { callerContext, afterWrite, create, IdParam, metaOf, type V1Deps } from "../common.ts";
import { v1Models } from "../models.ts";
import { assetView } from "./model.ts";
import { registeredAsset, requireSession } from "./service.ts";

export const assetRoutes = (deps: V1Deps) =>
  new Elysia({ name: "agentry.v1.sessions.assetRoutes", prefix: "/v1/sessions", detail: { tags: ["Sessions"] } })
    .use(v1Models)
    .use(callerContext(deps))
    .post("/:session_id/assets", ({ ctx, params, body, request, set }) => create(ctx, request, body, set, { asset: "ast" }, async ({ ids, resumed }) => {
      const session = requireSession(ctx, params.session_id);
      // A retry taking over this request finds the asset its first execution registered.
      let registered = resumed ? await registeredAsset(ctx, params.session_id, ids.asset!) : null;
      let position: bigint | null = null;
      if (!registered) {
        const r = await ctx.repos.sessions.handle(params.session_id, {
          type: "RegisterAsset", asset_id: ids.asset!, url: body.url, kind: body.kind, source_tool: body.source_tool ?? "upload",
          prompt: body.prompt ?? null, model: body.model ?? null, job_id: null,
        }, metaOf(ctx, request, session.user_id));
        const e = r.appended[0] as Extract<SessionEvent, { type: "AssetRegistered" }>;
        registered = { ...e.data, created_at: Date.now() };
        position = r.position;
      }
      const fresh = await afterWrite(ctx, { set, request }, position);
      const n = Number(registered.asset_label.slice("asset_".length));
      const row = fresh ? listAssets(ctx.db, params.session_id, 1, n - 1)[0] : undefined;
      return { status: 201, body: row ? assetView(row) : assetView({ ...registered, n, session_id: params.session_id } as AssetRow) };
    }), {
      params: IdParam("session_id"),
      body: t.Object({
        url: t.String({ pattern: "^https?://", maxLength: 4096 }),
        kind: t.Union([t.Literal("image"), t.Literal("video"), t.Literal("audio"), t.Literal("file")]),
        source_tool: t.Optional(t.String({ minLength: 1, maxLength: 100 })),
        prompt: t.Optional(t.String({ maxLength: 10_000 })),
        model: t.Optional(t.String({ maxLength: 200 })),
      }),
      response: { 201: "Asset" },
      detail: { summary: "Register an asset; its label asset_N is numbered atomically per session" },
    })
    .get("/:session_id/assets", ({ ctx, params, query }) => {
      requireSession(ctx, params.session_id);
      const limit = query.limit ?? 50;
      const after = decodeCursor(query.cursor, { n: "integer" });
      return page(listAssets(ctx.db, params.session_id, limit + 1, after?.n ?? 0), limit, assetView, (r) => ({ n: r.n }));
    }, { params: IdParam("session_id"), query: t.Object(PageQuery), response: "AssetList", detail: { summary: "List a session's assets, oldest first" } });
