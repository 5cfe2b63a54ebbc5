/** Every projection the server runs. Order does not matter: each keeps its own checkpoint. */
import type { Projection } from "../src/projections/projection.ts";
import { agentsProjection } from "./agents/index.ts";
import { assetsProjection } from "./assets/index.ts";
import { filesProjection } from "./files/index.ts";
import { jobsProjection } from "./jobs/index.ts";
import { memoryProjection } from "./memory/index.ts";
import { messagesProjection } from "./messages/index.ts";
import { sessionsProjection } from "./sessions/index.ts";
import { streamCatalog } from "./streamCatalog/index.ts";
import { usageProjection } from "./usage/index.ts";

export const projections: readonly Projection[] = [
  streamCatalog, agentsProjection, sessionsProjection, messagesProjection, jobsProjection, assetsProjection, usageProjection, filesProjection, memoryProjection,
];
