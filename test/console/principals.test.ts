/**
 * The console acts with the rights of the principal that logged in, no more: a management JWT for one
 * app, with the member role, reads that app's sessions, but not the operators' pages (they span every
 * app) and cannot revoke. Its login ends when the JWT expires. Plain HTTP against a real server.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { SignJWT } from "jose";
import { api, TEST_KEY } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const ROOT = "agr_console_principals_root_0123456789";
const SECRET = "a-management-jwt-secret-of-32-bytes-or-more";
let server: TestServer;

beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY, ADMIN_TOKEN: ROOT, MANAGEMENT_JWT_SECRET: SECRET });
  expect((await api(server.url).post("/v1/sessions", { user_id: "member-visible" })).status).toBe(201);
  await server.ctx.projections.waitUntilCaughtUp();
}, 30_000);
afterAll(async () => {
  await server?.stop();
});

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();

/** Logs in through the login form; the cookie and the form token of the logged-in pages. */
async function logIn(token: string): Promise<{ cookie: string; csrf: string; maxAge: number }> {
  const r = await fetch(`${server.url}/console/login`, {
    method: "POST", redirect: "manual", body: form({ token, next: "/console/sessions" }),
    headers: { origin: server.url, "content-type": "application/x-www-form-urlencoded" },
  });
  expect(r.status).toBe(303);
  const setCookie = r.headers.get("set-cookie")!;
  const cookie = setCookie.split(";")[0]!;
  const page = await (await fetch(`${server.url}/console/sessions`, { headers: { cookie } })).text();
  const csrf = /name="csrf" value="([^"]+)"/.exec(page)![1]!;
  return { cookie, csrf, maxAge: Number(/Max-Age=(\d+)/.exec(setCookie)![1]) };
}

test("a member JWT for one app: its sessions yes, the operators' pages and revoking no", async () => {
  const token = await new SignJWT({ sub: "auditor-ann", role: "member", apps: ["app_default"] })
    .setProtectedHeader({ alg: "HS256" }).setIssuedAt().setExpirationTime("10m").sign(new TextEncoder().encode(SECRET));
  const { cookie, csrf, maxAge } = await logIn(token);
  // The login lasts no longer than the JWT.
  expect(maxAge).toBeLessThanOrEqual(600);
  expect(maxAge).toBeGreaterThan(500);

  const sessions = await fetch(`${server.url}/console/sessions?by=user_id&q=member-visible`, { headers: { cookie } });
  const text = await sessions.text();
  expect(sessions.status).toBe(200);
  expect(text).toContain("auditor-ann · member · app_default");
  expect(text).toContain('data-session="sess_');

  const operator = await (await fetch(`${server.url}/console/operator`, { headers: { cookie } })).text();
  expect(operator).toContain("403 permission_denied");
  expect(operator).not.toContain('id="projections"');

  const keys = (await api(server.url, "").get("/v1/apps/app_default/keys", { authorization: `Bearer ${ROOT}` })).body.data;
  const revoke = await fetch(`${server.url}/console/apps/app_default/keys/${keys[0].id}/revoke`, {
    method: "POST", redirect: "manual", body: form({ csrf }),
    headers: { cookie, origin: server.url, "content-type": "application/x-www-form-urlencoded" },
  });
  expect(revoke.status).toBe(403);
  expect(await revoke.text()).toContain("permission_denied");
  expect((await api(server.url).get("/v1/sessions")).status).toBe(200);
});

test("a data-plane API key, or anything that is not a token, is not a console login", async () => {
  for (const token of [TEST_KEY, "agr_x\nInjected: header", "agr_é", `${ROOT} extra`]) {
    const r = await fetch(`${server.url}/console/login`, {
      method: "POST", redirect: "manual", body: form({ token }),
      headers: { origin: server.url, "content-type": "application/x-www-form-urlencoded" },
    });
    expect({ token, status: r.status }).toEqual({ token, status: 401 });
    expect(r.headers.get("set-cookie")).toBeNull();
    expect(await r.text()).toContain("That token is not valid");
  }
  const bare = await fetch(`${server.url}/console/login`, {
    method: "POST", redirect: "manual", body: form({ token: "   " }),
    headers: { origin: server.url, "content-type": "application/x-www-form-urlencoded" },
  });
  expect(bare.status).toBe(401);
});

test("a login form posted from another site is refused before the token is looked at", async () => {
  const r = await fetch(`${server.url}/console/login`, {
    method: "POST", redirect: "manual", body: form({ token: ROOT }),
    headers: { origin: "http://evil.example", "content-type": "application/x-www-form-urlencoded" },
  });
  expect(r.status).toBe(403);
  expect(r.headers.get("set-cookie")).toBeNull();
});
