/**
 * Chain verification over a store (the HTTP route and `bun run audit verify`), and the report both
 * print: streams are read a chunk at a time and checked one after another.
 */
import { StreamDeletedError, StreamNotFoundError } from "../eventstore/errors.ts";
import type { EventStore } from "../eventstore/port.ts";
import { chainEventOf, verifyStream, type ChainEvent, type StreamVerification } from "./chain.ts";

const CHUNK = 1000;

/** A stream's events as stored, in revision order; null when it does not exist (or was deleted). */
export async function readChainEvents(store: EventStore, stream: string): Promise<ChainEvent[] | null> {
  const out: ChainEvent[] = [];
  let next = 0n;
  for (;;) {
    let got = 0;
    try {
      for await (const e of store.readStream(stream, { fromRevision: next, maxCount: CHUNK })) {
        out.push(chainEventOf(e));
        next = e.revision + 1n;
        got++;
      }
    } catch (err) {
      if (err instanceof StreamNotFoundError || err instanceof StreamDeletedError) return out.length ? out : null;
      throw err;
    }
    if (got < CHUNK) return out;
  }
}

/** Verifies one stream as stored; null when it does not exist. */
export async function verifyStoredStream(store: EventStore, stream: string): Promise<StreamVerification | null> {
  const events = await readChainEvents(store, stream);
  return events ? verifyStream(stream, events) : null;
}

/** The names of the streams in `$all` (optionally only those whose events carry `appId`), in first-seen order. */
export async function streamNames(store: EventStore, appId?: string): Promise<string[]> {
  const names = new Set<string>();
  for await (const e of store.readAll()) {
    if (appId !== undefined && e.metadata.app_id !== appId) continue;
    names.add(e.streamId);
  }
  return [...names];
}

/** The JSON form of a verification (revisions as numbers). */
export function verificationView(v: StreamVerification) {
  return {
    object: "chain_verification" as const,
    stream: v.stream,
    ok: v.ok,
    events: v.events,
    unchained: v.unchained,
    head: v.head ? { revision: Number(v.head.revision), chain: v.head.chain } : null,
    break: v.break ? { revision: Number(v.break.revision), kind: v.break.kind, detail: v.break.detail } : null,
  };
}
