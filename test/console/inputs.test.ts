/**
 * Whatever a browser (or anyone with the login cookie) sends the console, the answer is a page, a 4xx
 * or a safe default, never a 500 or a request the console did not mean to make: a non-ASCII form token,
 * a `next` that would make a malformed Location header, an `app` that is a path, names of Object's
 * properties as an asset or a notice. Plain HTTP against a real server.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { api, TEST_KEY } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const ROOT = "agr_console_inputs_root_0123456789abcdef";
let server: TestServer;
let cookie: string;
let csrf: string;
let sessionId: string;

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
const formHeaders = { "content-type": "application/x-www-form-urlencoded" };

async function logIn(next?: string): Promise<Response> {
  return fetch(`${server.url}/console/login`, {
    method: "POST", redirect: "manual", body: form({ token: ROOT, ...(next === undefined ? {} : { next }) }),
    headers: { origin: server.url, ...formHeaders },
  });
}

beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY, ADMIN_TOKEN: ROOT });
  sessionId = (await api(server.url).post("/v1/sessions", { user_id: "u1" })).body.id;
  await server.ctx.projections.waitUntilCaughtUp();
  const r = await logIn();
  cookie = r.headers.get("set-cookie")!.split(";")[0]!;
  const page = await (await fetch(`${server.url}/console/sessions`, { headers: { cookie } })).text();
  csrf = /name="csrf" value="([^"]+)"/.exec(page)![1]!;
}, 30_000);
afterAll(async () => {
  await server?.stop();
});

describe("the console's inputs", () => {
  test("a form token with non-ASCII characters, as long as the real one, is refused (403), not a 500", async () => {
    for (const given of ["é".repeat(csrf.length), `${csrf.slice(0, -1)}é`, "€"]) {
      const r = await fetch(`${server.url}/console/apps/app_default/sessions/${sessionId}/verify`, {
        method: "POST", redirect: "manual", body: form({ csrf: given }), headers: { cookie, origin: server.url, ...formHeaders },
      });
      expect({ given, status: r.status }).toEqual({ given, status: 403 });
      expect(await r.text()).toContain("cross_origin_refused");
    }
    // The real token still works.
    const ok = await fetch(`${server.url}/console/apps/app_default/sessions/${sessionId}/verify`, {
      method: "POST", redirect: "manual", body: form({ csrf }), headers: { cookie, origin: server.url, ...formHeaders },
    });
    expect(ok.status).toBe(200);
  });

  test("after login, `next` leads only to a console page, as a well-formed Location", async () => {
    const cases: Array<[string, string]> = [
      ["/console/operator", "/console/operator"],
      ["/console/sessions?by=user_id&q=a%20b", "/console/sessions?by=user_id&q=a%20b"],
      ["/console/jobs?status=failed&x=a|b", "/console/jobs?status=failed&x=a%7Cb"],
      ["/console/\x01x", "/console/sessions"],
      ["/console/\u2028x", "/console/sessions"],
      ["/console/é", "/console/sessions"],
      ["/console/a b", "/console/sessions"],
      ["/console/%2e%2e/v1/apps", "/console/sessions"],
      ["/console/../v1/apps", "/console/sessions"],
      ["/console\\..\\v1", "/console/sessions"],
      ["//evil.example/console", "/console/sessions"],
      ["https://evil.example/console", "/console/sessions"],
    ];
    for (const [next, location] of cases) {
      const r = await logIn(next);
      expect({ next, status: r.status, location: r.headers.get("location") }).toEqual({ next, status: 303, location });
    }
  });

  test("the sessions page's `app` must be an app id: a path is a 400, not another API route", async () => {
    for (const app of ["..", "../admin/projections", "app_default/keys", "a b", "\x00"]) {
      const r = await fetch(`${server.url}/console/sessions?${new URLSearchParams({ app })}`, { headers: { cookie } });
      expect({ app, status: r.status }).toEqual({ app, status: 400 });
      expect(((await r.json()) as { error: unknown }).error).toMatchObject({ code: "invalid_request", details: { param: "app", location: "query" } });
    }
    const r = await fetch(`${server.url}/console/sessions?app=app_default&by=user_id&q=u1`, { headers: { cookie } });
    expect(r.status).toBe(200);
    expect(await r.text()).toContain(`data-session="${sessionId}"`);
  });

  test("an asset or notice named like an Object property is unknown", async () => {
    for (const name of ["constructor", "__proto__", "toString", "hasOwnProperty"]) {
      expect((await fetch(`${server.url}/console/assets/${name}`)).status).toBe(404);
      const page = await (await fetch(`${server.url}/console/login?notice=${name}`)).text();
      expect(page).not.toContain("function");
      expect(page).not.toContain('class="notice"');
    }
    expect((await fetch(`${server.url}/console/assets/console.js`)).status).toBe(200);
    expect(await (await fetch(`${server.url}/console/login?notice=logged_out`)).text()).toContain("You are logged out.");
  });

  test("over HTTPS (as a proxy tells it) the login cookie is __Host-: Secure, Path=/, no Domain", async () => {
    const r = await fetch(`${server.url}/console/login`, {
      method: "POST", redirect: "manual", body: form({ token: ROOT }),
      headers: { origin: server.url, "x-forwarded-proto": "https", ...formHeaders },
    });
    expect(r.status).toBe(303);
    const setCookie = r.headers.get("set-cookie")!;
    expect(setCookie).toMatch(/^__Host-agentry_console=[A-Za-z0-9_-]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+; Secure$/);
    const hostCookie = setCookie.split(";")[0]!;
    const over = (headers: Record<string, string>) => fetch(`${server.url}/console/operator`, { redirect: "manual", headers });
    expect((await over({ cookie: hostCookie, "x-forwarded-proto": "https" })).status).toBe(200);
    // Over HTTPS a cookie without the prefix is not a login (it could have been planted), and the other way round.
    const plainName = hostCookie.replace("__Host-", "");
    expect((await over({ cookie: plainName, "x-forwarded-proto": "https" })).status).toBe(303);
    expect((await over({ cookie: hostCookie })).status).toBe(303);
    expect((await over({ cookie: plainName })).status).toBe(200);
  });
});
