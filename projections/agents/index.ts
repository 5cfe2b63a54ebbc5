/** Agents read model: the current configuration of every agent. */
import type { Database } from "bun:sqlite";
import type { AgentEvent } from "../../src/domain/agent/agent.ts";
import type { RecordedEvent } from "../../src/eventstore/port.ts";
import type { Projection } from "../../src/projections/projection.ts";
import { appIdOf } from "../support.ts";

export const agentsProjection: Projection = {
  name: "agents",
  version: 1,
  eventTypes: ["AgentCreated", "AgentUpdated", "AgentDeleted"],
  tables: ["agents"],
  schema: `
    CREATE TABLE IF NOT EXISTS agents (
      id TEXT PRIMARY KEY, app_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL,
      system_prompt TEXT NOT NULL, model TEXT NOT NULL, tools TEXT NOT NULL, approval TEXT NOT NULL,
      output_schema TEXT, deleted INTEGER NOT NULL DEFAULT 0,
      created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, seq INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS agents_by_app ON agents(app_id, deleted, seq DESC);
  `,
  apply(db: Database, e: RecordedEvent) {
    const event = { type: e.type, data: e.data } as AgentEvent;
    const at = e.created.getTime();
    switch (event.type) {
      case "AgentCreated": {
        const d = event.data;
        db.query(
          `INSERT OR REPLACE INTO agents (id, app_id, name, description, system_prompt, model, tools, approval, output_schema, deleted, created_at, updated_at, seq)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)`,
        ).run(d.agent_id, appIdOf(e), d.name, d.description, d.system_prompt, JSON.stringify(d.model), JSON.stringify(d.tools), d.approval,
          d.output_schema === null ? null : JSON.stringify(d.output_schema), at, at, Number(e.position));
        break;
      }
      case "AgentUpdated": {
        const c = event.data.changes;
        const sets: string[] = [];
        const values: Array<string | number | null> = [];
        for (const [k, v] of Object.entries(c)) {
          if (!["name", "description", "system_prompt", "model", "tools", "approval", "output_schema"].includes(k)) continue;
          sets.push(`${k} = ?`);
          values.push(v === null ? null : typeof v === "string" ? v : JSON.stringify(v));
        }
        db.query(`UPDATE agents SET ${[...sets, "updated_at = ?"].join(", ")} WHERE id = ?`).run(...values, at, event.data.agent_id);
        break;
      }
      case "AgentDeleted":
        db.query("UPDATE agents SET deleted = 1, updated_at = ? WHERE id = ?").run(at, event.data.agent_id);
        break;
    }
  },
};
