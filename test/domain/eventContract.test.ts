/** Events as a versioned contract: stored data is lifted to the current version and checked at one boundary. */
import { describe, expect, test } from "bun:test";
import { EventContractError, SCHEMA_VERSION_KEY } from "../../src/core/eventContract.ts";
import { domainEvents } from "../../src/domain/catalog.ts";
import { jobEvents } from "../../src/domain/job/events.ts";
import { sessionEvents } from "../../src/domain/session/events.ts";
import { MemoryEventStore } from "../../src/eventstore/adapters/memory.ts";
import { newEventId } from "../../src/core/ids.ts";
import { createRepositories } from "../../src/app/context.ts";

const v1Asset = {
  asset_label: "asset_1", url: "https://example.com/a.png", kind: "image" as const, source_tool: "upload", prompt: null, model: null, job_id: null,
};

describe("decode", () => {
  test("an event written before its current version is upcast: AssetRegistered v1 gains asset_id null, then file_id null", () => {
    const event = sessionEvents.decode({ type: "AssetRegistered", data: v1Asset, metadata: {} });
    expect(event).toEqual({ type: "AssetRegistered", data: { ...v1Asset, asset_id: null, file_id: null } });
    const v2 = sessionEvents.decode({ type: "AssetRegistered", data: { ...v1Asset, asset_id: "ast_1" }, metadata: { [SCHEMA_VERSION_KEY]: 2 } });
    expect(v2.data).toEqual({ ...v1Asset, asset_id: "ast_1", file_id: null });
  });

  test("ClientHistorySaved v1 (the client's messages whole) is upcast to v2: their count and digest, no copy", () => {
    const messages = [{ role: "user", content: "hi", timestamp: "2026-05-08T07:00:00Z" }];
    const event = sessionEvents.decode({ type: "ClientHistorySaved", data: { messages, count: 1 }, metadata: { [SCHEMA_VERSION_KEY]: 1 } });
    const text = '[{"content":"hi","role":"user","timestamp":"2026-05-08T07:00:00Z"}]';
    expect(event).toEqual({ type: "ClientHistorySaved", data: { count: 1, sha256: new Bun.CryptoHasher("sha256").update(text).digest("hex"), bytes: text.length } });
  });

  test("current events pass as they are; data that does not fit is refused with the path", () => {
    const data = { ...v1Asset, asset_id: "ast_1", file_id: null };
    expect(sessionEvents.decode({ type: "AssetRegistered", data, metadata: { [SCHEMA_VERSION_KEY]: 3 } }).data).toEqual(data);
    expect(() => jobEvents.decode({ type: "JobStarted", data: { attempt: "one", runner_id: "r" }, metadata: {} })).toThrow(/JobStarted.*\/attempt/);
  });

  test("unknown types and versions newer than this server are refused, not guessed at", () => {
    expect(() => domainEvents.decode({ type: "SomethingElse", data: {}, metadata: {} })).toThrow(EventContractError);
    expect(() => sessionEvents.decode({ type: "SessionRenamed", data: { name: "x" }, metadata: { [SCHEMA_VERSION_KEY]: 9 } })).toThrow(/newer/);
  });
});

describe("the write boundary", () => {
  test("repositories stamp the version and refuse an event that does not fit its schema", async () => {
    const store = new MemoryEventStore();
    const repos = createRepositories(store);
    await repos.sessions.handle("s1", { type: "StartSession", session_id: "s1", agent_id: "a", user_id: "u", name: "n", external_ref: null, metadata: {} }, { appId: "app" });
    await repos.sessions.handle("s1", { type: "RegisterAsset", asset_id: "ast_1", url: "https://x/1.png", kind: "image", source_tool: "t", prompt: null, model: null, job_id: null }, { appId: "app" });
    const stored = [];
    for await (const e of store.readStream("session-s1")) stored.push(e);
    expect(stored.map((e) => e.metadata[SCHEMA_VERSION_KEY])).toEqual([1, 3]);
    const bad = repos.sessions.handle("s1", { type: "RenameSession", name: 42 as unknown as string }, { appId: "app" });
    await expect(bad).rejects.toThrow(EventContractError);
  });

  test("a stream holding v1 events loads into the current state", async () => {
    const store = new MemoryEventStore();
    await store.appendToStream("session-s2", [
      { id: newEventId(), type: "SessionStarted", data: { session_id: "s2", agent_id: "a", user_id: "u", name: "n", external_ref: null, metadata: {} } },
      { id: newEventId(), type: "AssetRegistered", data: v1Asset },
    ]);
    const { state } = await createRepositories(store).sessions.load("s2");
    expect(state.assetCount).toBe(1);
  });
});
