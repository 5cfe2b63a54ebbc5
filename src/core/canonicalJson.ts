/**
 * JSON with every object's keys sorted: equal values give equal text however their fields were
 * ordered (by a client, or by a validator filling in defaults).
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) =>
    v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]])) : v);
}
