/** The v1 data-plane API: every module requires the app's API key. */
import { Elysia } from "elysia";
import { agentRoutes } from "./agents.ts";
import { agentPromptRoutes } from "./agentPrompt.ts";
import type { V1Deps } from "./common.ts";
import { jobRoutes } from "./jobs.ts";
import { runRoutes } from "./runs.ts";
import { sessionRoutes } from "./sessions/index.ts";
import { fileRoutes } from "./files/index.ts";
import { endUserTokenRoutes } from "./endUserTokens.ts";
import { credentialRoutes } from "./credentials.ts";
import { usageRoutes } from "./usage.ts";
import { memoryRoutes } from "./memory.ts";
import { skillRoutes } from "./skills/index.ts";
import { userRoutes } from "./users.ts";

export const v1Routes = (deps: V1Deps) =>
  new Elysia({ name: "agentry.v1" })
    .use(agentRoutes(deps))
    .use(agentPromptRoutes(deps))
    .use(sessionRoutes(deps))
    .use(fileRoutes(deps))
    .use(runRoutes(deps))
    .use(jobRoutes(deps))
    .use(endUserTokenRoutes(deps))
    .use(credentialRoutes(deps))
    .use(usageRoutes(deps))
    .use(memoryRoutes(deps))
    .use(skillRoutes(deps))
    .use(userRoutes(deps));
