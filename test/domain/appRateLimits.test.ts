/** The app decider's rate limits: given past events, when SetRateLimits, then RateLimitsSet (or nothing). */
import { describe, expect, test } from "bun:test";
import { fold } from "../../src/core/decider.ts";
import { appDecider, type AppCommand, type AppEvent, type AppRateLimits } from "../../src/domain/app/app.ts";
import { appEvents } from "../../src/domain/app/events.ts";

const given = (events: AppEvent[], when: AppCommand) => appDecider.decide(when, fold(appDecider, events));
const created: AppEvent = { type: "AppCreated", data: { app_id: "app_1", name: "One" } };
const limits: AppRateLimits = {
  per_key: { requests_per_minute: 600, heavy_per_minute: null },
  per_end_user: { requests_per_minute: null, heavy_per_minute: 0 },
};
const set: AppEvent = { type: "RateLimitsSet", data: { app_id: "app_1", ...limits } };

describe("an app's rate limits", () => {
  test("are set whole, recorded as RateLimitsSet, and folded into the app's state", () => {
    expect(given([created], { type: "SetRateLimits", rate_limits: limits })).toEqual([set]);
    expect(fold(appDecider, [created]).rate_limits).toBeUndefined(); // the server's defaults
    expect(fold(appDecider, [created, set]).rate_limits).toEqual(limits);
  });

  test("setting what is already set decides nothing; a change replaces every limit", () => {
    expect(given([created, set], { type: "SetRateLimits", rate_limits: structuredClone(limits) })).toEqual([]);
    const reverted = { per_key: { requests_per_minute: null, heavy_per_minute: null }, per_end_user: { requests_per_minute: null, heavy_per_minute: null } };
    expect(given([created, set], { type: "SetRateLimits", rate_limits: reverted })).toEqual([{ type: "RateLimitsSet", data: { app_id: "app_1", ...reverted } }]);
  });

  test("a suspended app's limits may change; a deleted or unknown app has none", () => {
    const suspended: AppEvent = { type: "AppSuspended", data: { app_id: "app_1", reason: null } };
    expect(given([created, suspended], { type: "SetRateLimits", rate_limits: limits })).toEqual([set]);
    const deleted: AppEvent = { type: "AppDeleted", data: { app_id: "app_1" } };
    expect(() => given([created, deleted], { type: "SetRateLimits", rate_limits: limits })).toThrow(expect.objectContaining({ code: "app_not_found" }));
    expect(() => given([], { type: "SetRateLimits", rate_limits: limits })).toThrow(expect.objectContaining({ code: "app_not_found" }));
  });

  test("the event's contract refuses limits that are not whole numbers of at least 0", () => {
    const encode = (data: unknown) => () => appEvents.encode({ type: "RateLimitsSet", data } as AppEvent);
    expect(encode(set.data)).not.toThrow();
    expect(encode({ ...set.data, per_key: { requests_per_minute: -1, heavy_per_minute: null } })).toThrow();
    expect(encode({ ...set.data, per_key: { requests_per_minute: 1.5, heavy_per_minute: null } })).toThrow();
  });
});
