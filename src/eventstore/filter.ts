/** `$all` filters, applied the same way by every adapter. */
import type { AllFilter } from "./port.ts";

export function matchesFilter(streamId: string, type: string, filter: AllFilter | undefined): boolean {
  if (streamId.startsWith("$") || type.startsWith("$")) return false;
  if (!filter) return true;
  if (filter.streamPrefixes && !filter.streamPrefixes.some((p) => streamId.startsWith(p))) return false;
  if (filter.eventTypes && !filter.eventTypes.includes(type)) return false;
  return true;
}
