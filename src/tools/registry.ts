/** Turns an agent's tool declarations into the tools a turn can call. */
import type { ToolDeclaration } from "../domain/agent/agent.ts";
import { httpTool, PUBLIC_ONLY, type HttpToolOptions, type OutboundPolicy } from "./httpTool.ts";
import { registerAssetTool } from "./registerAsset.ts";
import { saveFileTool } from "./saveFile.ts";
import type { Tool } from "./tool.ts";

/** Built-in tools by name; each takes whether the agent wants approval before it runs. */
export const BUILTIN_TOOLS: Record<string, (requiresApproval?: boolean) => Tool> = {
  register_asset: registerAssetTool,
  save_file: saveFileTool,
};

/** `http` carries what HTTP tools need besides the policy, e.g. how to open their sealed header values. */
export function resolveTools(declarations: readonly ToolDeclaration[], outbound: OutboundPolicy = PUBLIC_ONLY, http: HttpToolOptions = {}): Map<string, Tool> {
  const tools = new Map<string, Tool>();
  for (const decl of declarations) {
    if (decl.type === "builtin") {
      const make = BUILTIN_TOOLS[decl.name];
      if (make) tools.set(decl.name, make(decl.requires_approval));
    } else {
      tools.set(decl.name, httpTool(decl, outbound, http));
    }
  }
  return tools;
}
