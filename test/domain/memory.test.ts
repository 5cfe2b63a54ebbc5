/** The memory entry decider, and the tokenizer the index and BM25 share. Given past events, when a command, then new events. */
import { describe, expect, test } from "bun:test";
import { fold } from "../../src/core/decider.ts";
import { memoryDecider, type MemoryAdded, type MemoryCommand, type MemoryEvent } from "../../src/domain/memory/memory.ts";
import { memoryEvents } from "../../src/domain/memory/events.ts";
import { scopeToken, tokenize } from "../../projections/memory/index.ts";
import { bm25Normalised, queryTerms } from "../../src/app/memory.ts";

const given = (events: MemoryEvent[], when: MemoryCommand) => memoryDecider.decide(when, fold(memoryDecider, events));
const entry: MemoryAdded = {
  memory_id: "mem_1", app_id: "app_1", user_id: "u-1", agent_id: null, content: "Likes green tea", metadata: {}, source: "api", job_id: null,
};
const added: MemoryEvent = { type: "MemoryAdded", data: entry };

describe("memory decider", () => {
  test("an entry is added once; the same entry again decides nothing", () => {
    expect(given([], { type: "AddMemory", entry })).toEqual([added]);
    expect(given([added], { type: "AddMemory", entry })).toEqual([]);
  });

  test("removed once, with its owner; then gone for good (404 memory_not_found)", () => {
    const removed = given([added], { type: "RemoveMemory" });
    expect(removed).toEqual([{ type: "MemoryRemoved", data: { memory_id: "mem_1", app_id: "app_1", user_id: "u-1" } }]);
    for (const when of [{ type: "RemoveMemory" }, { type: "AddMemory", entry }] as MemoryCommand[]) {
      expect(() => given([added, removed[0]!], when)).toThrow(expect.objectContaining({ code: "memory_not_found", status: 404 }));
    }
    expect(() => given([], { type: "RemoveMemory" })).toThrow(expect.objectContaining({ code: "memory_not_found" }));
  });

  test("blank or oversized content and oversized metadata are refused (400 naming the field)", () => {
    const cases: Array<[Partial<MemoryAdded>, string]> = [
      [{ content: " \n\t" }, "content"],
      [{ content: "x".repeat(8001) }, "content"],
      [{ metadata: { big: "y".repeat(16_400) } }, "metadata"],
    ];
    for (const [change, param] of cases) {
      expect(() => given([], { type: "AddMemory", entry: { ...entry, ...change } })).toThrow(expect.objectContaining({ status: 400, details: { param } }));
    }
  });

  test("the events fit their contract", () => {
    expect(memoryEvents.decode({ type: "MemoryAdded", data: entry })).toEqual(added);
    expect(() => memoryEvents.decode({ type: "MemoryAdded", data: { ...entry, content: "" } })).toThrow();
  });
});

describe("words and scores", () => {
  test("words are runs of letters and digits, lower-cased, without diacritics", () => {
    expect(tokenize("Café au LAIT, naïve façade — 42 x-ray")).toEqual(["cafe", "au", "lait", "naive", "facade", "42", "x", "ray"]);
    expect(tokenize("!!! ...")).toEqual([]);
  });

  test("function words leave a query that has other words; at most 32 words count", () => {
    expect(queryTerms("What does the user like to eat?")).toEqual(["user", "like", "eat"]);
    expect(queryTerms("the a")).toEqual(["the", "a"]);
    expect(queryTerms(Array.from({ length: 40 }, (_, i) => `w${i}`).join(" "))).toHaveLength(32);
  });

  test("bm25_score is strictly increasing in BM25, from 0 towards 1", () => {
    const xs = [0, 0.01, 0.5, 1, 2, 10, 1000];
    const ys = xs.map(bm25Normalised);
    expect(ys[0]).toBe(0);
    for (let i = 1; i < ys.length; i++) expect(ys[i]!).toBeGreaterThan(ys[i - 1]!);
    expect(ys[ys.length - 1]!).toBeLessThan(1);
  });

  test("a scope token is one index word, different per app and per user", () => {
    const a = scopeToken("app_1", "u-1");
    expect(tokenize(a)).toEqual([a]);
    expect(new Set([a, scopeToken("app_1", "u-2"), scopeToken("app_2", "u-1"), scopeToken("app_1.test", "u-1")]).size).toBe(4);
  });
});
