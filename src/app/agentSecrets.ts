/**
 * HTTP-tool headers an agent declares are secrets (an `Authorization` header, an API key): their values
 * live in the agent's events and in the agents read model only sealed by the secret box
 * (src/secrets/secretBox.ts), under the agent's app. Header names stay in clear.
 *
 * - Writing: every value a client sends is sealed before the command is decided (`sealToolHeaders`).
 * - Keeping: tools are replaced whole on a patch, and no API returns a header value, so a client
 *   re-sending an agent's tools marks a value to keep instead of repeating it: the header value
 *   `{"keep": true}`, or the masked form the API showed (`{"has_secret": true, "last4": …}`), keeps the
 *   value stored for the header of the same name (case-insensitive) on the agent's tool of the same
 *   name (`resolveKeptHeaders`). A keep with nothing to keep is refused (400).
 * - Showing: every header reads `{has_secret, last4}` (`maskTools`), never its value.
 * - Calling: the runner opens the values with the agent's app when the tool is called (`openHeader`).
 * - Agents written before this sealing hold plain values: a value that is not `isSealed` is read as
 *   plain, and sealed on the agent's next write (`sealStoredHeaders`).
 */
import { ConflictError, ValidationError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import type { ToolDeclaration } from "../domain/agent/agent.ts";
import { isSealed, secretView, type SecretBox, type SecretView } from "../secrets/secretBox.ts";

/** A header value in a request: a new value, or a marker keeping the stored one. */
export type HeaderInput = string | { keep: true } | { has_secret: true; last4?: string | null };

const KEEP = "\u0000keep";

const isKeep = (v: unknown): boolean =>
  typeof v === "object" && v !== null && ((v as { keep?: unknown }).keep === true || (v as { has_secret?: unknown }).has_secret === true);

type HttpTool = Extract<ToolDeclaration, { type: "http" }>;

/**
 * The tools with every new header value sealed for `appId`; keep markers are left for
 * `resolveKeptHeaders` (only it may put these tools in a command).
 */
export async function sealToolHeaders(box: SecretBox, appId: string, tools: ToolDeclaration[]): Promise<ToolDeclaration[]> {
  return Promise.all(tools.map(async (tool) => {
    if (tool.type !== "http" || !tool.headers) return tool;
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(tool.headers as Record<string, HeaderInput>)) {
      headers[name] = isKeep(value) ? KEEP : await box.seal(appId, value as string);
    }
    return { ...tool, headers };
  }));
}

/** True when some HTTP tool holds a header value not yet sealed (written before sealing). */
export const hasPlainHeaders = (tools: readonly ToolDeclaration[]): boolean =>
  tools.some((t) => t.type === "http" && Object.values(t.headers ?? {}).some((v) => !isSealed(v)));

/**
 * The stored tools with their plain (pre-sealing) header values sealed, as a map from each plain
 * value to its sealed form, for `resolveKeptHeaders` to use when it keeps one.
 */
export async function sealStoredHeaders(box: SecretBox, appId: string, tools: readonly ToolDeclaration[]): Promise<Map<string, string>> {
  const sealed = new Map<string, string>();
  for (const tool of tools) {
    if (tool.type !== "http") continue;
    for (const value of Object.values(tool.headers ?? {})) {
      if (!isSealed(value) && !sealed.has(value)) sealed.set(value, await box.seal(appId, value));
    }
  }
  return sealed;
}

/**
 * The tools a command may hold: each kept header takes the sealed value stored for it on the agent's
 * current tools (`current`); a plain stored value is replaced by its sealed form from `sealedPlain`.
 * Pure, so it runs inside the decision, on the state the command is decided on.
 */
export function resolveKeptHeaders(tools: ToolDeclaration[], current: readonly ToolDeclaration[], sealedPlain: ReadonlyMap<string, string>): ToolDeclaration[] {
  return tools.map((tool) => {
    if (tool.type !== "http" || !tool.headers || !Object.values(tool.headers).includes(KEEP)) return tool;
    const before = current.find((t): t is HttpTool => t.type === "http" && t.name === tool.name);
    // A kept secret goes only where it went before: a tool whose URL now points at another origin must
    // be given its header values again, or anyone allowed to edit the agent could redirect them.
    if (before && originOf(before.url) !== originOf(tool.url)) {
      throw new ValidationError(`Tool ${tool.name} now calls another origin; send its header values again instead of keeping them`, { param: "tools" });
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(tool.headers)) {
      if (value !== KEEP) {
        headers[name] = value;
        continue;
      }
      const stored = Object.entries(before?.headers ?? {}).find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1];
      if (stored === undefined) {
        throw new ValidationError(`Tool ${tool.name} has no stored value for header ${name} to keep; send the value`, { param: "tools" });
      }
      const kept = isSealed(stored) ? stored : sealedPlain.get(stored);
      // The agent changed since its stored values were sealed (another write won): decided again, in a moment.
      if (kept === undefined) throw new ConflictError("agent_changed", `Agent tools changed while updating; retry`);
      headers[name] = kept;
    }
    return { ...tool, headers };
  });
}

const originOf = (url: string): string => {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
};

/** The stored tools with their plain values sealed (see `sealStoredHeaders`). */
export const withStoredHeadersSealed = (tools: readonly ToolDeclaration[], sealedPlain: ReadonlyMap<string, string>): ToolDeclaration[] =>
  tools.map((tool) => tool.type !== "http" || !tool.headers ? tool : {
    ...tool, headers: Object.fromEntries(Object.entries(tool.headers).map(([n, v]) => [n, isSealed(v) ? v : (sealedPlain.get(v) ?? v)])),
  });

/** Views by sealed value: a sealed value never changes, and its view holds no secret. Bounded. */
const views = new Map<string, SecretView>();
const MAX_VIEWS = 10_000;

/**
 * The tools as an API shows them: each header `{has_secret, last4}`. Sealed values are opened (with the
 * agent's app) only to count and take their last 4 characters; one that does not open shows
 * `{has_secret: true, last4: null}`.
 */
export async function maskTools(box: SecretBox, appId: string, tools: ReadonlyArray<Record<string, unknown>>, logger?: Logger): Promise<Array<Record<string, unknown>>> {
  return Promise.all(tools.map(async (tool) => {
    if (tool.type !== "http" || typeof tool.headers !== "object" || tool.headers === null) return tool;
    const headers: Record<string, SecretView> = {};
    for (const [name, value] of Object.entries(tool.headers as Record<string, unknown>)) {
      headers[name] = typeof value !== "string" ? { has_secret: true, last4: null } : await viewOf(box, appId, value, logger);
    }
    return { ...tool, headers };
  }));
}

async function viewOf(box: SecretBox, appId: string, value: string, logger?: Logger): Promise<SecretView> {
  if (!isSealed(value)) return secretView(value);
  const key = `${appId}\n${value}`;
  const cached = views.get(key);
  if (cached) return cached;
  let view: SecretView;
  try {
    view = secretView(await box.open(appId, value));
  } catch (err) {
    logger?.warn("an HTTP-tool header does not open", { app_id: appId, error: (err as Error).message });
    return { has_secret: true, last4: null };
  }
  if (views.size >= MAX_VIEWS) views.delete(views.keys().next().value!);
  views.set(key, view);
  return view;
}

/** A header value as the tool sends it: opened with the agent's app when sealed, as is when plain (pre-sealing). */
export const openHeader = (box: SecretBox, appId: string, value: string): Promise<string> =>
  isSealed(value) ? box.open(appId, value) : Promise.resolve(value);
