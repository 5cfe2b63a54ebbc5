/** What a tool is, and what it may use while it runs. */
import type { TSchema, Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import type { AssetKind } from "../domain/session/session.ts";

export interface RegisteredAsset {
  asset_label: string;
  url: string | null;
  kind: AssetKind;
  source_tool: string;
  prompt: string | null;
  file_id?: string | null;
}

/**
 * An asset a tool made and returns for registration: a URL, or a file of the app (`file_id`).
 * Checked by src/tools/toolOutput.ts, then registered by the tool step with the next `asset_N` label.
 */
export interface AssetInput {
  url?: string;
  file_id?: string;
  kind: AssetKind;
  prompt?: string;
  model?: string;
}

/**
 * What a running tool may tell the job's watchers before its result (recorded on the job's stream):
 * progress (a fraction 0..1, a message, or both), a status line for the user, or a canvas operation.
 */
export type ToolEmission =
  | { type: "progress"; progress?: number; message?: string }
  | { type: "info"; content: string }
  | { type: "canvas_op"; op: string; args: Record<string, unknown> };

export interface ToolContext {
  sessionId: string | null;
  jobId: string;
  signal: AbortSignal;
  /** Registers an asset on the job's session (atomic `asset_N` label). */
  registerAsset(input: { url: string; kind: AssetKind; source_tool: string; prompt: string | null; model: string | null }): Promise<RegisteredAsset>;
  /** The call this context belongs to (set for each call by the tool step). */
  callId?: string;
  /**
   * Records a progress, info or canvas event of this call on the job's stream, in order, before the
   * call's result. Throws a ToolError for an emission that is malformed or past the per-call cap.
   */
  emit?(emission: ToolEmission): Promise<void>;
  /**
   * Stores a file the tool made as an artifact of the job's session (src/app/files.ts): bytes in the
   * blob store, the record as events. Absent where the server stores no files.
   */
  saveFile?(file: { name: string; content_type: string; content: string | Uint8Array }): Promise<{ file_id: string; name: string; content_type: string; size: number; sha256: string }>;
}

export interface ToolResult {
  result: unknown;
  /** Set when the tool registered an asset: shown with the tool's result in events and history. */
  asset?: RegisteredAsset;
  /** Assets the tool made: each is registered (label `asset_N`) and shown in `tool.completed`. */
  assets?: unknown;
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

/** A built-in tool's arguments, checked against its schema: a ToolError naming the first mismatch otherwise. */
export function toolArgs<S extends TSchema>(schema: S, args: unknown): Static<S> {
  if (!Value.Check(schema, args)) {
    const first = Value.Errors(schema, args).First();
    throw new ToolError(`Invalid arguments${first ? ` at ${first.path || "/"}: ${first.message}` : ""}`);
  }
  return args as Static<S>;
}
