/**
 * The per-stream hash chain every adapter stamps into each event's metadata (`chain`), so that an edited,
 * removed or reordered event is detectable (src/audit/chain.ts verifies it; docs/security.md says what it
 * proves). Pure: adapters hand in the previous event's chain and the event as it will be stored.
 *
 *   chain = sha256_hex(prev_chain \n stream \n id \n type \n data \n metadata-without-chain)
 *
 * (each part JSON; metadata with its top-level keys sorted).
 *
 * `prev_chain` is the chain of the stream's previous visible event, or GENESIS for a stream's first event,
 * the first event after a soft delete, and the first chained event after events written before the chain
 * existed. The revision is not hashed: the link to the previous event already fixes each event's place,
 * and EventStoreDB's client does not know the revision an `any` append will land at.
 */

export const CHAIN_KEY = "chain";
export const GENESIS = "0".repeat(64);

/**
 * Metadata as hashed: its top-level keys sorted (EventStoreDB renames and moves the correlation and
 * causation ids on the way in and back out), values as JSON.
 */
export function sortedMetadataJson(metadata: Record<string, unknown>): string {
  let out = "{";
  let first = true;
  for (const k of Object.keys(metadata).sort()) {
    if (k === CHAIN_KEY) continue;
    const v = JSON.stringify(metadata[k]);
    if (v === undefined) continue;
    out += (first ? "" : ",") + JSON.stringify(k) + ":" + v;
    first = false;
  }
  return out + "}";
}

/** What the chain covers of one event. */
export interface ChainedFields {
  stream: string;
  id: string;
  type: string;
  data: unknown;
  metadata?: Record<string, unknown>;
}

/** The metadata without its chain: what is hashed. */
export function metadataWithoutChain(metadata: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!metadata || !(CHAIN_KEY in metadata)) return metadata ?? {};
  const { [CHAIN_KEY]: _, ...rest } = metadata;
  return rest;
}

/**
 * The text hashed for one event, apart from the previous chain (computable before the append knows
 * its place). Data is hashed as its JSON text: every store gives data back with its keys in the order
 * they were written, so re-serializing what is read gives the same text; adapters pass the text they
 * store, so hashing costs no second serialization.
 */
export function chainBodyJson(stream: string, id: string, type: string, dataJson: string, metadata: Record<string, unknown> | undefined): string {
  return `${JSON.stringify(stream)}\n${JSON.stringify(id)}\n${JSON.stringify(type)}\n${dataJson}\n${sortedMetadataJson(metadata ?? {})}`;
}

/** chainBodyJson for an event as read (or about to be written). */
export function chainBody(event: ChainedFields): string {
  return chainBodyJson(event.stream, event.id, event.type, JSON.stringify(event.data ?? null), event.metadata);
}

/** One link: the chain of an event whose body is `body`, after an event whose chain is `prev`. */
export function chainLink(prev: string, body: string): string {
  return Bun.SHA256.hash(`${prev}\n${body}`, "hex") as string;
}

/** The chain value of an event, given the chain of the stream's previous event (or GENESIS). */
export function chainHash(prev: string, event: ChainedFields): string {
  return chainLink(prev, chainBody(event));
}

/** The chain an event carries, or undefined for one written before the chain existed. */
export function chainOf(metadata: Record<string, unknown> | undefined): string | undefined {
  const value = metadata?.[CHAIN_KEY];
  return typeof value === "string" ? value : undefined;
}

/**
 * Serialized metadata (JSON of an object without `chain`) with the chain added as its last key: the
 * store keeps this text, so the chain costs no second serialization.
 */
export function withChainJson(metadataJson: string, chain: string): string {
  return metadataJson === "{}" ? `{"${CHAIN_KEY}":"${chain}"}` : `${metadataJson.slice(0, -1)},"${CHAIN_KEY}":"${chain}"}`;
}

/**
 * Stamps the chain into each event's metadata, in order, starting from `prev`. Returns the metadata
 * objects to store (the caller's are not changed) and the last chain.
 */
export function chainEvents(
  stream: string, prev: string, events: ReadonlyArray<{ id: string; type: string; data: unknown; metadata?: Record<string, unknown> }>,
): { metadata: Record<string, unknown>[]; last: string } {
  let last = prev;
  const metadata = events.map((e) => {
    const base = metadataWithoutChain(e.metadata);
    last = chainHash(last, { stream, id: e.id, type: e.type, data: e.data, metadata: base });
    return { ...base, [CHAIN_KEY]: last };
  });
  return { metadata, last };
}
