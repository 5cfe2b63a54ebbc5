/** What a tool is, and what it may use while it runs. */
import type { AssetKind } from "../domain/session/session.ts";

export interface RegisteredAsset {
  asset_label: string;
  url: string;
  kind: AssetKind;
  source_tool: string;
  prompt: string | null;
}

export interface ToolContext {
  sessionId: string | null;
  jobId: string;
  signal: AbortSignal;
  /** Registers an asset on the job's session (atomic `asset_N` label). */
  registerAsset(input: { url: string; kind: AssetKind; source_tool: string; prompt: string | null; model: string | null }): Promise<RegisteredAsset>;
}

export interface ToolResult {
  result: unknown;
  /** Set when the tool registered an asset: shown with the tool's result in events and history. */
  asset?: RegisteredAsset;
}

export interface Tool {
  name: string;
  description: string;
  /** JSON Schema of the arguments (TypeBox schemas are JSON Schema). */
  parameters: Record<string, unknown>;
  requires_approval: boolean;
  estimated_credits: number;
  execute(args: unknown, ctx: ToolContext): Promise<ToolResult>;
}

/** A tool failure the model should see (as the tool's result), not a crash of the job. */
export class ToolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ToolError";
  }
}
