/** The app decider: an app's life and its keys. Given past events, when a command, then new events. */
import { describe, expect, test } from "bun:test";
import { fold } from "../../src/core/decider.ts";
import { appDecider, type AppCommand, type AppEvent, type NewKey } from "../../src/domain/app/app.ts";
import { keyHash, keyPrefix, newApiKey } from "../../src/domain/app/keys.ts";

const given = (events: AppEvent[], when: AppCommand) => appDecider.decide(when, fold(appDecider, events));
const created: AppEvent = { type: "AppCreated", data: { app_id: "app_1", name: "One" } };
const key = (id: string, hash = `h-${id}`): NewKey => ({
  key_id: id, name: id, prefix: "agk_live_abcd", hash, mode: "live", scopes: ["data:read", "data:write"], agent_ids: null, user_id: null, expires_at: null,
});
const issued = (id: string): AppEvent => ({ type: "ApiKeyIssued", data: { app_id: "app_1", ...key(id) } });

describe("app decider", () => {
  test("an app is created once; renaming to the same name decides nothing", () => {
    expect(given([], { type: "CreateApp", app_id: "app_1", name: "One" })).toEqual([created]);
    expect(() => given([created], { type: "CreateApp", app_id: "app_1", name: "Again" })).toThrow(expect.objectContaining({ code: "app_exists" }));
    expect(given([created], { type: "RenameApp", name: "One" })).toEqual([]);
    expect(given([created], { type: "RenameApp", name: "Two" })).toMatchObject([{ type: "AppRenamed", data: { name: "Two" } }]);
  });

  test("a suspended app issues no key but can be resumed; a deleted app is gone", () => {
    const suspended: AppEvent = { type: "AppSuspended", data: { app_id: "app_1", reason: "unpaid" } };
    expect(() => given([created, suspended], { type: "IssueKey", key: key("k1") })).toThrow(expect.objectContaining({ code: "app_suspended" }));
    expect(given([created, suspended], { type: "ResumeApp" })).toMatchObject([{ type: "AppResumed" }]);
    const deleted: AppEvent = { type: "AppDeleted", data: { app_id: "app_1" } };
    expect(() => given([created, deleted], { type: "RenameApp", name: "x" })).toThrow(expect.objectContaining({ code: "app_not_found" }));
  });

  test("keys: unique by id and value, at least one scope, revoked once", () => {
    expect(given([created], { type: "IssueKey", key: key("k1") })).toEqual([issued("k1")]);
    expect(() => given([created, issued("k1")], { type: "IssueKey", key: key("k2", "h-k1") })).toThrow(expect.objectContaining({ code: "key_exists" }));
    expect(() => given([created], { type: "IssueKey", key: { ...key("k1"), scopes: [] } })).toThrow(expect.objectContaining({ code: "invalid_request" }));
    const revoked: AppEvent = { type: "ApiKeyRevoked", data: { app_id: "app_1", key_id: "k1" } };
    expect(given([created, issued("k1")], { type: "RevokeKey", key_id: "k1" })).toEqual([revoked]);
    expect(given([created, issued("k1"), revoked], { type: "RevokeKey", key_id: "k1" })).toEqual([]);
    expect(() => given([created], { type: "RevokeKey", key_id: "nope" })).toThrow(expect.objectContaining({ code: "key_not_found" }));
  });

  test("a rotation issues the new key and sets the old one's grace end in one decision", () => {
    const events = given([created, issued("k1")], { type: "RotateKey", key_id: "k1", replacement: key("k2"), grace_until: 5000, now: 0 });
    expect(events.map((e) => e.type)).toEqual(["ApiKeyIssued", "ApiKeyExpiring"]);
    const state = fold(appDecider, [created, issued("k1"), ...events]);
    expect(state.keys.map((k) => [k.key_id, k.refused_after])).toEqual([["k1", 5000], ["k2", null]]);
    // An expired key is not brought back by rotating it.
    const expiring: AppEvent = { type: "ApiKeyIssued", data: { app_id: "app_1", ...key("k3"), expires_at: 1000 } };
    expect(() => given([created, expiring], { type: "RotateKey", key_id: "k3", replacement: key("k4"), grace_until: 0, now: 1000 })).toThrow(expect.objectContaining({ code: "key_expired" }));
  });
});

describe("key material", () => {
  test("keys are long, random, tagged with their mode; only a hash and a prefix are kept", () => {
    const a = newApiKey("live");
    const b = newApiKey("test");
    expect(a).toMatch(/^agk_live_[A-Za-z0-9_-]{32}$/);
    expect(b).toMatch(/^agk_test_[A-Za-z0-9_-]{32}$/);
    expect(newApiKey("live")).not.toBe(a);
    expect(keyHash(a)).toMatch(/^[0-9a-f]{64}$/);
    expect(keyPrefix(a)).toBe(a.slice(0, 13));
    expect(keyPrefix(a).length).toBeLessThan(a.length - 20);
  });
});
