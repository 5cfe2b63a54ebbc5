/** Built-in `register_asset`: adds a media URL to the session's assets under the next `asset_N` label. */
import { Type } from "@sinclair/typebox";
import { ToolError, toolArgs, type Tool } from "./tool.ts";

const Args = Type.Object({
  url: Type.String({ format: "uri", pattern: "^https?://", description: "Public URL of the media file" }),
  kind: Type.Union([Type.Literal("image"), Type.Literal("video"), Type.Literal("audio"), Type.Literal("file")]),
  prompt: Type.Optional(Type.String({ description: "Caption or the prompt that produced it" })),
});

export const registerAssetTool = (requiresApproval = false): Tool => ({
  name: "register_asset",
  description: "Register a media file (image, video, audio or file) with the session so it can be referred to by its asset label.",
  parameters: Args as unknown as Record<string, unknown>,
  requires_approval: requiresApproval,
  estimated_credits: 0,
  async execute(given, ctx) {
    const args = toolArgs(Args, given);
    if (!ctx.sessionId) throw new ToolError("register_asset needs a session; single-turn runs have none");
    const asset = await ctx.registerAsset({ url: args.url, kind: args.kind, source_tool: "register_asset", prompt: args.prompt ?? null, model: null });
    return { result: asset, asset };
  },
});
