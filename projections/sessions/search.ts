/**
 * Auditors' session search over the sessions read model: by id, user or external reference, deleted
 * sessions included (their events stay for audit). The projection (projections/sessions/index.ts) owns
 * the table; this only queries it.
 */
import type { Database } from "bun:sqlite";
import type { SessionRow } from "./index.ts";

export interface SessionSearch {
  sessionId?: string;
  userId?: string;
  externalRef?: string;
}

/**
 * One data partition's sessions matching every given filter, newest created first, keyset-paginated by
 * (created_seq, id): an order that never changes, so a walk through the pages sees each session once.
 */
export function searchSessions(db: Database, appId: string, filter: SessionSearch, limit: number, after?: { seq: number; id: string }): SessionRow[] {
  const where = ["app_id = ?"];
  const params: Array<string | number> = [appId];
  if (filter.sessionId !== undefined) { where.push("id = ?"); params.push(filter.sessionId); }
  if (filter.userId !== undefined) { where.push("user_id = ?"); params.push(filter.userId); }
  if (filter.externalRef !== undefined) { where.push("external_ref = ?"); params.push(filter.externalRef); }
  if (after) { where.push("(created_seq < ? OR (created_seq = ? AND id < ?))"); params.push(after.seq, after.seq, after.id); }
  return db.query(`SELECT * FROM sessions WHERE ${where.join(" AND ")} ORDER BY created_seq DESC, id DESC LIMIT ?`).all(...params, limit) as SessionRow[];
}
