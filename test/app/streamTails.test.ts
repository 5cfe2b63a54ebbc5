/** The in-memory stream tails: exact or nothing. */
import { describe, expect, test } from "bun:test";
import { StreamTails } from "../../src/app/streamTails.ts";
import type { RecordedEvent } from "../../src/eventstore/port.ts";

const ev = (stream: string, revision: number): RecordedEvent => ({
  id: crypto.randomUUID(), type: "T", streamId: stream, revision: BigInt(revision), position: BigInt(revision + 1), data: {}, metadata: {}, created: new Date(0),
});
const revisions = (events: RecordedEvent[] | undefined) => events?.map((e) => Number(e.revision));

describe("stream tails", () => {
  test("a warmed tail follows the live feed and serves reads from inside it", () => {
    const tails = new StreamTails({ maxStreams: 10, maxEvents: 100 });
    expect(tails.read("s", 0n, 10)).toBeUndefined();
    tails.warm("s", [ev("s", 3), ev("s", 4)]);
    tails.observe(ev("s", 4)); // already known
    tails.observe(ev("s", 5));
    expect(revisions(tails.read("s", 4n, 10))).toEqual([4, 5]);
    expect(revisions(tails.read("s", 6n, 10))).toEqual([]); // the tail: nothing new
    expect(tails.read("s", 2n, 10)).toBeUndefined(); // before what it holds: the store answers
    expect(tails.lastRevision("s")).toBe(5n);
  });

  test("a gap in the feed drops the tail rather than serve a hole", () => {
    const tails = new StreamTails({ maxStreams: 10, maxEvents: 100 });
    tails.warm("s", [ev("s", 0)]);
    tails.observe(ev("s", 2));
    expect(tails.read("s", 0n, 10)).toBeUndefined();
    expect(tails.lastRevision("s")).toBeUndefined();
  });

  test("a store read older than what the feed already delivered is not kept", () => {
    const tails = new StreamTails({ maxStreams: 10, maxEvents: 100 });
    tails.observe(ev("s", 0));
    tails.observe(ev("s", 1)); // no tail yet: remembered as the feed's position for s
    tails.warm("s", [ev("s", 0)]); // a read that finished before revision 1 arrived
    expect(tails.read("s", 0n, 10)).toBeUndefined();
    tails.warm("s", [ev("s", 0), ev("s", 1)]);
    expect(revisions(tails.read("s", 0n, 10))).toEqual([0, 1]);
  });

  test("bounded: least recently used streams go, and each keeps its newest events", () => {
    const tails = new StreamTails({ maxStreams: 2, maxEvents: 3 });
    tails.warm("a", [ev("a", 0)]);
    tails.warm("b", [ev("b", 0)]);
    tails.read("a", 0n, 1); // a is now the most recently used
    tails.warm("c", [ev("c", 0)]);
    expect([tails.lastRevision("a"), tails.lastRevision("b"), tails.lastRevision("c")]).toEqual([0n, undefined, 0n]);
    for (let r = 1; r <= 5; r++) tails.observe(ev("a", r));
    expect(revisions(tails.read("a", 3n, 10))).toEqual([3, 4, 5]);
    expect(tails.read("a", 2n, 10)).toBeUndefined();
  });

  test("a revision known without its events answers only 'nothing new'", () => {
    const tails = new StreamTails({ maxStreams: 10, maxEvents: 100 });
    tails.warmRevision("s", 7n);
    expect(revisions(tails.read("s", 8n, 10))).toEqual([]);
    expect(tails.read("s", 7n, 10)).toBeUndefined();
    tails.observe(ev("s", 8));
    expect(revisions(tails.read("s", 8n, 10))).toEqual([8]);
  });

  test("memory is bounded in bytes too: big events push the least recently read streams out", () => {
    const big = (stream: string, revision: number): RecordedEvent => ({ ...ev(stream, revision), data: { blob: "x".repeat(100_000) } });
    const tails = new StreamTails({ maxStreams: 100, maxEvents: 100, maxBytes: 350_000 });
    tails.warm("a", [big("a", 0)]);
    tails.warm("b", [big("b", 0)]);
    tails.warm("c", [big("c", 0)]);
    expect(tails.read("a", 0n, 10)).toHaveLength(1); // a is now the most recently read
    tails.warm("d", [big("d", 0)]);
    expect(tails.read("b", 0n, 10)).toBeUndefined(); // the least recently read went
    expect(tails.read("a", 0n, 10)).toHaveLength(1);
    tails.observe(big("a", 1)); // growing a stream counts too
    expect(tails.heldBytes).toBeLessThanOrEqual(350_000);
    expect(revisions(tails.read("a", 0n, 10))).toEqual([0, 1]);
    tails.forget("a");
    tails.forget("c");
    tails.forget("d");
    expect(tails.heldBytes).toBe(0);
  });
});

