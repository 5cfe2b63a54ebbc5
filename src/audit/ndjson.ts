/**
 * Reading audit exports (NDJSON: one event a line, as `GET /v1/audit/…?format=ndjson` writes them,
 * `auditView` in src/app/audit.ts) back into events the chain verifier checks. A line needs `stream`,
 * `revision` (an integer, or its decimal string), `id`, `type`, `data` and `metadata` (as stored, with
 * its `chain`); other fields are ignored, and so are lines whose `object` is not `audit_event`.
 */
import type { ChainEvent } from "./chain.ts";

export class NdjsonFormatError extends Error {
  constructor(readonly line: number, message: string) {
    super(`line ${line}: ${message}`);
  }
}

/** The events of an NDJSON export, in file order; throws NdjsonFormatError on a line it cannot read. */
export function* parseAuditNdjson(text: string): Generator<ChainEvent> {
  let lineNo = 0;
  for (const raw of text.split("\n")) {
    lineNo++;
    const line = raw.trim();
    if (!line) continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new NdjsonFormatError(lineNo, "not JSON");
    }
    if (!value || typeof value !== "object" || Array.isArray(value)) throw new NdjsonFormatError(lineNo, "not a JSON object");
    const o = value as Record<string, unknown>;
    if (o.object !== undefined && o.object !== "audit_event") continue;
    const revision = typeof o.revision === "number" && Number.isSafeInteger(o.revision) ? BigInt(o.revision)
      : typeof o.revision === "string" && /^\d+$/.test(o.revision) ? BigInt(o.revision)
      : undefined;
    if (typeof o.stream !== "string" || revision === undefined || typeof o.id !== "string" || typeof o.type !== "string"
      || !("data" in o) || !o.metadata || typeof o.metadata !== "object" || Array.isArray(o.metadata)) {
      throw new NdjsonFormatError(lineNo, "an event needs stream, revision, id, type, data and metadata");
    }
    yield { stream: o.stream, revision, id: o.id, type: o.type, data: o.data, metadata: o.metadata as Record<string, unknown> };
  }
}
