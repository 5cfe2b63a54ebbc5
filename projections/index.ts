/** Every projection the server runs. Order does not matter: each keeps its own checkpoint. */
import type { Projection } from "../src/projections/projection.ts";
import { streamCatalog } from "./streamCatalog/index.ts";

export const projections: readonly Projection[] = [streamCatalog];
