/** /v1/sessions: sessions, their messages (turns), assets, jobs, and the session event stream. */
import { Elysia } from "elysia";
import type { V1Deps } from "../common.ts";
import { sessionActivityRoutes } from "./activity.ts";
import { assetRoutes } from "./assets.ts";
import { sessionCrudRoutes } from "./crud.ts";
import { messageRoutes } from "./messages.ts";
import { runSkillRoutes } from "./runSkill.ts";

export const sessionRoutes = (deps: V1Deps) =>
  new Elysia({ name: "agentry.v1.sessions" })
    .use(sessionCrudRoutes(deps))
    .use(messageRoutes(deps))
    .use(runSkillRoutes(deps))
    .use(assetRoutes(deps))
    .use(sessionActivityRoutes(deps));
