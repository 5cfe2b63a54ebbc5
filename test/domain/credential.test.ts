/** The end-user credential decider (BYOS). Given past events, when a command, then new events. */
import { describe, expect, test } from "bun:test";
import { fold } from "../../src/core/decider.ts";
import {
  credentialDecider, credentialStatus, isRefreshable, needsRefresh, REFRESH_AHEAD_MS, type CredentialCommand, type CredentialEvent,
} from "../../src/domain/credential/credential.ts";
import { credentialEvents } from "../../src/domain/credential/events.ts";
import { userCredentialsId } from "../../src/domain/streams.ts";

const given = (events: CredentialEvent[], when: CredentialCommand) => credentialDecider.decide(when, fold(credentialDecider, events));
const owner = { app_id: "app_1", user_id: "u-1", provider: "openai" as const };
const oauth: CredentialEvent = {
  type: "CredentialSet", data: { ...owner, kind: "oauth", secret: "sb1:sealed-access", refresh_token: "sb1:sealed-refresh", expires_at: 1_000, last4: null },
};
const refresh = (basedOn: number): CredentialCommand => ({
  type: "RefreshCredential", provider: "openai", based_on: basedOn, secret: "sb1:new-access", refresh_token: null, expires_at: 5_000, last4: null,
});

describe("credential decider", () => {
  test("a refresh is decided against the version it started from; a stale one is refused", () => {
    const v = fold(credentialDecider, [oauth]).credentials.openai!.version;
    const [refreshed] = given([oauth], refresh(v));
    expect(refreshed).toEqual({ type: "CredentialRefreshed", data: { ...owner, secret: "sb1:new-access", refresh_token: null, expires_at: 5_000, last4: null } });
    // Another job refreshed first: the loser's refresh names a version no longer current.
    expect(() => given([oauth, refreshed!], refresh(v))).toThrow(expect.objectContaining({ code: "credential_changed" }));
    // A null refresh token in a refresh keeps the stored one.
    expect(fold(credentialDecider, [oauth, refreshed!]).credentials.openai).toMatchObject({ secret: "sb1:new-access", refresh_token: "sb1:sealed-refresh", expires_at: 5_000 });
  });

  test("nothing to refresh: no credential, or an API key now", () => {
    expect(() => given([], refresh(1))).toThrow(expect.objectContaining({ code: "credential_not_found" }));
    const key: CredentialEvent = { type: "CredentialSet", data: { ...owner, kind: "api_key", secret: "sb1:key", refresh_token: null, expires_at: null, last4: "abcd" } };
    const v = fold(credentialDecider, [oauth, key]).credentials.openai!.version;
    expect(() => given([oauth, key], refresh(v))).toThrow(expect.objectContaining({ code: "credential_changed" }));
  });

  test("a refused refresh token is recorded once, for the tokens it was about; a reconnect clears it", () => {
    const v = fold(credentialDecider, [oauth]).credentials.openai!.version;
    const refused = given([oauth], { type: "RefuseRefresh", provider: "openai", based_on: v, reason: "invalid_grant" });
    expect(refused).toEqual([{ type: "CredentialRefreshRefused", data: { ...owner, reason: "invalid_grant" } }]);
    expect(isRefreshable(fold(credentialDecider, [oauth, ...refused]).credentials.openai)).toBe(false);
    expect(given([oauth, ...refused], { type: "RefuseRefresh", provider: "openai", based_on: v + 1, reason: "again" })).toEqual([]);
    expect(given([oauth], { type: "RefuseRefresh", provider: "openai", based_on: v + 7, reason: "stale" })).toEqual([]);
    expect(isRefreshable(fold(credentialDecider, [oauth, ...refused, oauth]).credentials.openai)).toBe(true);
  });

  test("removing is idempotent; providers are apart", () => {
    expect(given([], { type: "RemoveCredential", provider: "openai" })).toEqual([]);
    expect(given([oauth], { type: "RemoveCredential", provider: "anthropic" })).toEqual([]);
    expect(given([oauth], { type: "RemoveCredential", provider: "openai" })).toEqual([{ type: "CredentialRemoved", data: owner }]);
  });

  test("status: missing, connected, expired; refreshed a little ahead of expiry", () => {
    const c = fold(credentialDecider, [oauth]).credentials.openai!;
    expect(credentialStatus(undefined, 0)).toBe("missing");
    expect(credentialStatus(c, 999)).toBe("connected");
    expect(credentialStatus(c, 1_000)).toBe("expired");
    expect(needsRefresh(c, 1_000 - REFRESH_AHEAD_MS - 1)).toBe(false);
    expect(needsRefresh(c, 1_000 - REFRESH_AHEAD_MS)).toBe(true);
    expect(needsRefresh({ ...c, expires_at: null }, 10 ** 15)).toBe(false);
  });

  test("events match their contract; stream ids hash the user, per data partition", () => {
    expect(credentialEvents.encode(oauth)).toEqual({ schema_version: 1 });
    expect(() => credentialEvents.encode({ ...oauth, data: { ...oauth.data, provider: "gemini" as never } })).toThrow();
    const id = userCredentialsId("app_1", "alice@example.com");
    expect(id).toMatch(/^app_1:[0-9a-f]{64}$/);
    expect(id).not.toContain("alice");
    expect(userCredentialsId("app_1.test", "alice@example.com")).not.toBe(id);
  });
});
