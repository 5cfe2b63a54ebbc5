/**
 * Built-in `save_file`: the agent writes a file (a report, a CSV, a draft). It is stored as an artifact
 * of the job's session (GET /v1/sessions/{id}/files?role=artifact) and registered as the session's next
 * asset; the result gives its file id.
 */
import { Type } from "@sinclair/typebox";
import { ToolError, toolArgs, type Tool } from "./tool.ts";

const Args = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 255, pattern: "^[^\\x00-\\x1f\\x7f/\\\\]+$", description: "The file's name, e.g. report.md" }),
  content: Type.String({ description: "The file's text" }),
  content_type: Type.Optional(Type.String({ description: "MIME type; from the name's extension when left out, else text/plain" })),
}, { additionalProperties: false });

/** The type of a name's extension, for the common text formats; text/plain otherwise. */
const TYPES: Record<string, string> = { md: "text/markdown", csv: "text/csv", json: "application/json", html: "text/html", xml: "application/xml", yaml: "application/yaml", yml: "application/yaml" };

export const saveFileTool = (requiresApproval = false): Tool => ({
  name: "save_file",
  description: "Save a text file (a report, a table, a draft) as a file of this conversation that the user can download.",
  parameters: Args as unknown as Record<string, unknown>,
  requires_approval: requiresApproval,
  estimated_credits: 0,
  async execute(given, ctx) {
    const args = toolArgs(Args, given);
    if (!ctx.saveFile) throw new ToolError("This server does not store files");
    const contentType = args.content_type ?? TYPES[args.name.toLowerCase().split(".").pop() ?? ""] ?? "text/plain";
    const saved = await ctx.saveFile({ name: args.name, content_type: contentType, content: args.content });
    return { result: saved, assets: [{ file_id: saved.file_id, kind: "file" }] };
  },
});
