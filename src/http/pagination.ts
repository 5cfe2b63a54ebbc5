/** Opaque cursors for keyset pagination: base64url JSON the client passes back unchanged. */
import { t } from "elysia";
import { ValidationError } from "../core/errors.ts";

export const encodeCursor = (value: Record<string, string | number>): string =>
  Buffer.from(JSON.stringify(value)).toString("base64url");

export function decodeCursor<T extends Record<string, string | number>>(cursor: string | undefined, keys: readonly (keyof T)[]): T | undefined {
  if (cursor === undefined || cursor === "") return undefined;
  try {
    const value = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as T;
    if (value && typeof value === "object" && keys.every((k) => k in value)) return value;
  } catch {
    /* fall through */
  }
  throw new ValidationError("Invalid cursor: pass back the next_cursor of a previous page unchanged", { param: "cursor" }, "invalid_cursor");
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
