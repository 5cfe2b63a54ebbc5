/** Opaque cursors for keyset pagination: base64url JSON the client passes back unchanged. */
import { t } from "elysia";
import { ValidationError } from "../core/errors.ts";

export const encodeCursor = (value: Record<string, string | number>): string =>
  Buffer.from(JSON.stringify(value)).toString("base64url");

type CursorShape = Record<string, "integer" | "string">;
type CursorOf<S extends CursorShape> = { [K in keyof S]: S[K] extends "integer" ? number : string };

/**
 * Decodes a cursor this API issued; anything else — not base64url JSON, missing keys, wrong types —
 * is `400 invalid_cursor` naming `param` (the query parameter the client sent it in).
 */
export function decodeCursor<S extends CursorShape>(cursor: string | undefined, shape: S, param = "cursor"): CursorOf<S> | undefined {
  if (cursor === undefined || cursor === "") return undefined;
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    value = undefined;
  }
  const ok = typeof value === "object" && value !== null && Object.entries(shape).every(([k, type]) => {
    const v = (value as Record<string, unknown>)[k];
    return type === "integer" ? Number.isSafeInteger(v) : typeof v === "string" && v.length <= 200;
  });
  if (!ok) throw new ValidationError(`Invalid ${param}: pass back the next_cursor of a previous page unchanged`, { param }, "invalid_cursor");
  return value as CursorOf<S>;
}

export const PageQuery = {
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 200, default: 20, description: "Page size (1–200)" })),
  cursor: t.Optional(t.String({ maxLength: 512, description: "next_cursor from the previous page" })),
};

export interface Page<T> {
  data: T[];
  has_more: boolean;
  next_cursor: string | null;
}

/** Builds a page from `limit + 1` fetched rows. */
export function page<Row, T>(rows: Row[], limit: number, view: (r: Row) => T, cursorOf: (r: Row) => Record<string, string | number>): Page<T> {
  const hasMore = rows.length > limit;
  const shown = hasMore ? rows.slice(0, limit) : rows;
  return { data: shown.map(view), has_more: hasMore, next_cursor: hasMore ? encodeCursor(cursorOf(shown[shown.length - 1]!)) : null };
}

export const PageOf = <T extends import("@sinclair/typebox").TSchema>(item: T) =>
  t.Object({ data: t.Array(item), has_more: t.Boolean(), next_cursor: t.Union([t.String(), t.Null()]) });
