/**
 * Verifies streams' hash chains (src/eventstore/chain.ts): recomputes each event's link from the events
 * as stored and reports the first break with its stream, revision and kind. Pure: the events come from
 * a store read, an audit export or anywhere else; the same verifier serves the HTTP route, the CLI and
 * offline NDJSON files.
 *
 * Kinds of break:
 * - `missing`: revisions jump (an event was removed), or a stream's first event does not start a chain;
 * - `reordered`: revisions go backwards, or an event links to another event of the stream than the one
 *   before it;
 * - `edited`: an event does not link to the one before it (its content, or its chain, was changed), or a
 *   chained stream has an event without a chain.
 *
 * Events written before the chain existed carry none; they are counted as `unchained` and the first
 * chained event after them starts from the genesis, as writers do (see docs/security.md).
 */
import { chainBody, chainLink, chainOf, GENESIS } from "../eventstore/chain.ts";
import type { RecordedEvent } from "../eventstore/port.ts";

/** An event as the verifier needs it: what the chain covers, and where it stands. */
export interface ChainEvent {
  stream: string;
  revision: bigint;
  id: string;
  type: string;
  data: unknown;
  metadata: Record<string, unknown>;
}

/** A stored event as the verifier reads it. */
export const chainEventOf = (e: RecordedEvent): ChainEvent => ({
  stream: e.streamId, revision: e.revision, id: e.id, type: e.type, data: e.data, metadata: e.metadata,
});

export type BreakKind = "edited" | "missing" | "reordered";

export interface ChainBreak {
  stream: string;
  /** Where the break is: the edited or misplaced event, or the first missing revision. */
  revision: bigint;
  kind: BreakKind;
  detail: string;
}

export interface StreamVerification {
  stream: string;
  /** Events read. */
  events: number;
  /** Events written before the chain existed (no `chain` in their metadata). */
  unchained: number;
  /** The stream's last revision and chain as read: anchor these elsewhere to detect a rewritten tail. */
  head: { revision: bigint; chain: string | null } | null;
  ok: boolean;
  break?: ChainBreak;
}

/** Verifies one stream's events, given in the order read (by revision). */
export function verifyStream(stream: string, events: readonly ChainEvent[]): StreamVerification {
  const last = events[events.length - 1];
  const result: StreamVerification = {
    stream, events: events.length, unchained: 0, ok: true,
    head: last ? { revision: last.revision, chain: chainOf(last.metadata) ?? null } : null,
  };
  const fail = (revision: bigint, kind: BreakKind, detail: string): StreamVerification => ({ ...result, ok: false, break: { stream, revision, kind, detail } });
  let chained = false;
  let prev: ChainEvent | undefined;
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    if (e.stream !== stream) return fail(e.revision, "reordered", `event ${e.id} of stream ${e.stream} is among ${stream}'s events`);
    if (prev && e.revision <= prev.revision) {
      return fail(e.revision, "reordered", `revision ${e.revision} comes after revision ${prev.revision}`);
    }
    const stored = chainOf(e.metadata);
    if (stored === undefined) {
      if (chained) return fail(e.revision, "edited", `revision ${e.revision} has no chain, after chained events`);
      result.unchained++;
      prev = e;
      continue;
    }
    const gap = prev !== undefined && e.revision !== prev.revision + 1n;
    const prevChain = prev ? (chainOf(prev.metadata) ?? GENESIS) : GENESIS;
    const body = bodyOf(e);
    if (chainLink(prevChain, body) !== stored) {
      if (gap) {
        const want = prev!.revision + 1n;
        if (events.some((x, k) => k > i && x.revision === want)) return fail(want, "reordered", `revision ${want} comes after revision ${e.revision}`);
        return fail(want, "missing", `revisions ${want}–${e.revision - 1n} are missing before revision ${e.revision}`);
      }
      const home = linksAfter(events, i, body, stored);
      if (home !== undefined) return fail(e.revision, "reordered", `the event at revision ${e.revision} (${e.id}) belongs ${home}`);
      if (!prev && e.revision > 0n) {
        return fail(e.revision - 1n, "missing", `the stream starts at revision ${e.revision}, which does not start a chain: the events before it are missing`);
      }
      return fail(e.revision, "edited", `revision ${e.revision} (${e.id}) does not match its chain: it, or its chain, was changed`);
    }
    // A link from the genesis over a gap: the stream restarts after a soft delete or unchained events.
    if (gap && prevChain !== GENESIS) return fail(prev!.revision + 1n, "missing", `revision ${prev!.revision + 1n} is missing`);
    chained = true;
    prev = e;
  }
  return result;
}

function bodyOf(e: ChainEvent): string {
  return chainBody({ stream: e.stream, id: e.id, type: e.type, data: e.data, metadata: e.metadata });
}

/**
 * Where an event whose link fails here belongs: right after the event (now at some other revision)
 * whose chain it links to, or first (it links to the genesis). Undefined if it links to none.
 */
function linksAfter(events: readonly ChainEvent[], at: number, body: string, stored: string): string | undefined {
  if (at > 0 && chainLink(GENESIS, body) === stored) return "first in the stream";
  for (let k = 0; k < events.length; k++) {
    const p = chainOf(events[k]!.metadata);
    if (k !== at && k !== at - 1 && p !== undefined && chainLink(p, body) === stored) return `after the event now at revision ${events[k]!.revision}`;
  }
  return undefined;
}

/** Groups events of many streams (e.g. an export, in any order) by stream, in the order given. */
export function byStream(events: Iterable<ChainEvent>): Map<string, ChainEvent[]> {
  const out = new Map<string, ChainEvent[]>();
  for (const e of events) {
    let list = out.get(e.stream);
    if (!list) out.set(e.stream, (list = []));
    list.push(e);
  }
  return out;
}
