/**
 * Agents read model: the current configuration of every agent. `system_prompt` is the spec's (the
 * default); `prompt_override` the app's override, if any (the effective prompt is the override, else the
 * default); `prompt_updated_at` when either last changed. `billing` who pays for its model calls ("app" or
 * "end_user"; "app" for agents made before it existed). `memory` its memory settings as JSON (null: off).
 */
import type { Database } from "bun:sqlite";
import { applyAgentPatch, type AgentEvent, type AgentMemory, type AgentSpec } from "../../src/domain/agent/agent.ts";
import type { RecordedEvent } from "../../src/eventstore/port.ts";
import type { Projection } from "../../src/projections/projection.ts";
import { agentEvents } from "../../src/domain/agent/events.ts";
import { appIdOf, occurredAt } from "../support.ts";

export const agentsProjection: Projection = {
  name: "agents",
  version: 4,
  eventTypes: ["AgentCreated", "AgentUpdated", "AgentPatched", "AgentDeleted", "AgentPromptOverridden", "AgentPromptReverted"],
  tables: ["agents"],
  schema: `
    CREATE TABLE IF NOT EXISTS agents (
      id TEXT PRIMARY KEY, app_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL,
      system_prompt TEXT NOT NULL, model TEXT NOT NULL, tools TEXT NOT NULL, approval TEXT NOT NULL,
      output_schema TEXT, deleted INTEGER NOT NULL DEFAULT 0, prompt_override TEXT, prompt_updated_at INTEGER NOT NULL,
      billing TEXT NOT NULL DEFAULT 'app', memory TEXT,
      created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, seq INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS agents_by_app ON agents(app_id, deleted, seq DESC);
  `,
  apply(db: Database, e: RecordedEvent) {
    const event = agentEvents.decode(e);
    const at = occurredAt(e);
    switch (event.type) {
      case "AgentCreated": {
        const d = event.data;
        db.query(
          `INSERT OR REPLACE INTO agents (id, app_id, name, description, system_prompt, model, tools, approval, output_schema, deleted, prompt_override, prompt_updated_at, billing, memory, created_at, updated_at, seq)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, ?, ?, ?, ?, ?, ?)`,
        ).run(d.agent_id, appIdOf(e), d.name, d.description, d.system_prompt, JSON.stringify(d.model), JSON.stringify(d.tools), d.approval,
          d.output_schema === null ? null : JSON.stringify(d.output_schema), at, d.billing ?? "app", d.memory ? JSON.stringify(d.memory) : null, at, at, Number(e.position));
        break;
      }
      case "AgentUpdated":
      case "AgentPatched": {
        const row = db.query("SELECT name, description, system_prompt, model, tools, approval, output_schema, billing, memory FROM agents WHERE id = ?")
          .get(event.data.agent_id) as { name: string; description: string; system_prompt: string; model: string; tools: string; approval: string; output_schema: string | null; billing: string; memory: string | null } | null;
        if (!row) break;
        const current: AgentSpec = {
          name: row.name, description: row.description, system_prompt: row.system_prompt, model: JSON.parse(row.model),
          tools: JSON.parse(row.tools), approval: row.approval as AgentSpec["approval"], output_schema: row.output_schema === null ? null : JSON.parse(row.output_schema),
          billing: row.billing as NonNullable<AgentSpec["billing"]>,
          ...(row.memory ? { memory: JSON.parse(row.memory) as AgentMemory } : {}),
        };
        const next = event.type === "AgentPatched" ? applyAgentPatch(current, event.data.patch) : { ...current, ...event.data.changes };
        const promptChanged = (event.type === "AgentPatched" ? event.data.patch.system_prompt : event.data.changes.system_prompt) !== undefined;
        db.query(
          `UPDATE agents SET name = ?, description = ?, system_prompt = ?, model = ?, tools = ?, approval = ?, output_schema = ?, billing = ?, memory = ?, updated_at = ?,
             prompt_updated_at = CASE WHEN ? THEN ? ELSE prompt_updated_at END WHERE id = ?`,
        ).run(next.name, next.description, next.system_prompt, JSON.stringify(next.model), JSON.stringify(next.tools), next.approval,
          next.output_schema === null ? null : JSON.stringify(next.output_schema), next.billing ?? "app", next.memory ? JSON.stringify(next.memory) : null,
          at, promptChanged ? 1 : 0, at, event.data.agent_id);
        break;
      }
      case "AgentPromptOverridden":
        db.query("UPDATE agents SET prompt_override = ?, prompt_updated_at = ?, updated_at = ? WHERE id = ?").run(event.data.system_prompt, at, at, event.data.agent_id);
        break;
      case "AgentPromptReverted":
        db.query("UPDATE agents SET prompt_override = NULL, prompt_updated_at = ?, updated_at = ? WHERE id = ?").run(at, at, event.data.agent_id);
        break;
      case "AgentDeleted":
        db.query("UPDATE agents SET deleted = 1, updated_at = ? WHERE id = ?").run(at, event.data.agent_id);
        break;
    }
  },
};

export interface AgentRow {
  id: string; name: string; description: string; system_prompt: string; model: string; tools: string; approval: string;
  output_schema: string | null; created_at: number; updated_at: number; seq: number;
  /** The app's override of `system_prompt` (the default), or null. */
  prompt_override: string | null;
  prompt_updated_at: number;
  billing: "app" | "end_user";
  /** Memory settings as JSON; null: off. */
  memory: string | null;
}

export const findAgent = (db: Database, appId: string, id: string): AgentRow | null =>
  db.query("SELECT * FROM agents WHERE app_id = ? AND id = ? AND deleted = 0").get(appId, id) as AgentRow | null;

/** Agents newest first, keyset-paginated by seq. */
export function listAgents(db: Database, appId: string, limit: number, afterSeq?: number, only?: readonly string[] | null): AgentRow[] {
  const where = ["app_id = ?", "deleted = 0"];
  const params: Array<string | number> = [appId];
  if (afterSeq !== undefined) { where.push("seq < ?"); params.push(afterSeq); }
  if (only) {
    where.push(only.length ? `id IN (${only.map(() => "?").join(", ")})` : "0");
    params.push(...only);
  }
  return db.query(`SELECT * FROM agents WHERE ${where.join(" AND ")} ORDER BY seq DESC LIMIT ?`).all(...params, limit) as AgentRow[];
}
