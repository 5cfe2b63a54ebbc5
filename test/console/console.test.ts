/**
 * The web console (/console) in a real browser: Debian's headless Chromium driven by playwright-core,
 * against a real server on a free port. An auditor logs in, finds a session, steps through its
 * timeline, replays it as of an event and verifies its chains; an operator rebuilds a read model and
 * watches it finish, reads jobs by status and the queue, and revokes a key. Chromium missing is a
 * failure, not a skip (CI installs Debian's `chromium`).
 *
 * With CONSOLE_SCREENSHOTS=1 each screen is saved to docs/images/console-*.png (for the README).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { BrowserContext, Page } from "playwright-core";
import { ShadowBuild } from "../../src/projections/shadowRebuild.ts";
import { launchChromium, type RunningChromium } from "../support/chromium.ts";
import { api, TEST_KEY } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const ROOT = "agr_console_root_token_0123456789abcdef";
const SHOTS = process.env.CONSOLE_SCREENSHOTS === "1" ? join(import.meta.dir, "../../docs/images") : null;
/** What a user typed, shown as text on every screen that holds it: never as markup. */
const HOSTILE = `<img src=x onerror="document.title='pwned'">`;

let server: TestServer;
let chromium: RunningChromium;
let context: BrowserContext;
let page: Page;
let sessionId: string;
let acmeId: string;
let backendKey: string;
let otherKey: string;
const dialogs: string[] = [];

/**
 * Holds the sessions read model's rebuild after its first batch until the test lets it go, so the page
 * surely draws it running, part way, and only its own polling can show it done. Everything else about
 * the rebuild is the real one (ShadowBuild.catchUp is the loop that reads the store into the shadow).
 */
const realCatchUp = ShadowBuild.prototype.catchUp;
let holdRebuild: { released: Promise<void>; release(): void } | null = null;
ShadowBuild.prototype.catchUp = async function (this: ShadowBuild, ...args: Parameters<ShadowBuild["catchUp"]>) {
  const hold = this.projection.name === "sessions" ? holdRebuild : null;
  if (hold) {
    const [store, batchSize, shouldStop] = args;
    let batches = 0;
    // shouldStop is asked before each batch (and reports progress): stop after the first.
    await realCatchUp.call(this, store, batchSize, () => shouldStop() || ++batches > 1);
    await hold.released;
  }
  return realCatchUp.apply(this, args);
};
function holdNextRebuild(): () => void {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  holdRebuild = { released, release: () => { holdRebuild = null; release(); } };
  return holdRebuild.release;
}

async function shot(name: string, fullPage = false): Promise<void> {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `console-${name}.png`), fullPage });
}

beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY, ADMIN_TOKEN: ROOT, SANDBOX_CHUNK_DELAY_MS: "0" });
  const client = api(server.url);
  const root = api(server.url, "");
  const asRoot = { authorization: `Bearer ${ROOT}` };

  // One conversation of three turns, the first sent with a request id the timeline must show.
  const s = await client.post("/v1/sessions", { user_id: "customer-1042", name: "Refund for order 1042", external_ref: "ticket-4521" });
  expect(s.status).toBe(201);
  sessionId = s.body.id;
  const turns = [`Where is my refund? ${HOSTILE}`, "It was order 1042.", "Thanks, that helps."];
  for (const [i, content] of turns.entries()) {
    const r = await client.post(`/v1/sessions/${sessionId}/messages`, { content, wait: true }, i === 0 ? { "x-request-id": "req-console-first-turn" } : {});
    expect(r.body.status).toBe("completed");
  }
  // Another user's session, which searches by user must not return.
  expect((await client.post("/v1/sessions", { user_id: "customer-7", external_ref: "ticket-9" })).status).toBe(201);
  // History beyond one rebuild batch (2000 events), so a rebuild held after its first is part way.
  for (let i = 0; i < 5; i++) {
    await server.ctx.store.appendToStream(`bulk-${i}`, Array.from({ length: 1000 }, (_, k) => ({ id: crypto.randomUUID(), type: "BulkNoted", data: { k } })));
  }

  // A second app with two keys: one to revoke from the console, one a forged request must not revoke.
  const acme = await root.post("/v1/apps", { name: "Acme" }, asRoot);
  acmeId = acme.body.id;
  backendKey = (await root.post(`/v1/apps/${acmeId}/keys`, { name: "backend" }, asRoot)).body.key;
  otherKey = (await root.post(`/v1/apps/${acmeId}/keys`, { name: "reporting", scopes: ["data:read"] }, asRoot)).body.key;
  await server.ctx.projections.waitUntilCaughtUp();

  chromium = await launchChromium();
  context = await chromium.browser.newContext({ viewport: { width: 1280, height: 860 } });
  page = await context.newPage();
  // Generous: the machine running the suite may be busy; a step that never comes still fails.
  page.setDefaultTimeout(20_000);
  page.on("dialog", (d) => {
    dialogs.push(d.message());
    void d.accept();
  });
}, 60_000);

afterAll(async () => {
  holdRebuild?.release();
  ShadowBuild.prototype.catchUp = realCatchUp;
  await chromium?.close();
  await server?.stop();
});

const url = (path: string) => `${server.url}${path}`;

describe("the console in Chromium", () => {
  test("an unauthenticated visit goes to the login page; a wrong token is refused; the root token logs in", async () => {
    await page.goto(url("/console/operator"));
    expect(new URL(page.url()).pathname).toBe("/console/login");
    await shot("login");

    await page.fill("input[name=token]", "agr_not_the_root_token");
    await page.click("button[type=submit]");
    await expect(page.locator("[role=alert]").textContent()).resolves.toContain("That token is not valid");
    expect(await context.cookies()).toEqual([]);

    await page.fill("input[name=token]", ROOT);
    await page.click("button[type=submit]");
    // Back where the visit started.
    expect(new URL(page.url()).pathname).toBe("/console/operator");
    const [cookie] = await context.cookies();
    expect(cookie).toMatchObject({ name: "agentry_console", httpOnly: true, sameSite: "Strict", path: "/console" });
    // The cookie is a random login id: the token itself is nowhere in the browser.
    expect(cookie!.value).not.toContain(ROOT);
    expect(await page.evaluate("document.cookie")).toBe("");
  }, 45_000);

  test("an auditor finds the session by user and by external ref", async () => {
    await page.goto(url("/console/sessions"));
    await page.selectOption("select[name=by]", "user_id");
    await page.fill("input[name=q]", "customer-1042");
    await page.click("form[role=search] button[type=submit]");
    const rows = page.locator("#sessions tbody tr");
    expect(await rows.count()).toBe(1);
    expect(await rows.first().getAttribute("data-session")).toBe(sessionId);
    await shot("sessions");

    await page.selectOption("select[name=by]", "external_ref");
    await page.fill("input[name=q]", "ticket-4521");
    await page.click("form[role=search] button[type=submit]");
    expect(await page.locator("#sessions tbody tr").getAttribute("data-session")).toBe(sessionId);

    await page.selectOption("select[name=by]", "session_id");
    await page.fill("input[name=q]", "sess_unknown");
    await page.click("form[role=search] button[type=submit]");
    await expect(page.locator(".empty").textContent()).resolves.toContain("No session found");
  }, 45_000);

  test("the timeline: every event with its metadata, data on demand, user input shown as text, paged", async () => {
    await page.goto(url("/console/sessions?by=external_ref&q=ticket-4521"));
    await page.click(`#sessions a:has-text("${sessionId}")`);
    expect(new URL(page.url()).pathname).toBe(`/console/apps/app_default/sessions/${sessionId}`);

    const types = await page.locator(".event").evaluateAll((els) => els.map((e) => e.getAttribute("data-type")));
    expect(types[0]).toBe("SessionStarted");
    expect(types).toEqual(expect.arrayContaining(["MessageSent", "JobQueued", "JobStarted", "JobCompleted", "TurnEnded"]));
    // 22 events in all (the session's start, then 7 per turn), 20 to a page.
    expect(types.length).toBe(20);
    // Each event's metadata: the first turn's request id, and actors.
    const first = page.locator('.event[data-type="MessageSent"]').first();
    await expect(first.locator(".meta").textContent()).resolves.toContain("req-console-first-turn");
    await expect(first.locator(".meta").textContent()).resolves.toContain("key:");
    // Its data, expanded: the hostile text is there as text, and nothing ran.
    await first.locator("summary", { hasText: /^Data$/ }).click();
    await expect(first.locator("details pre").first().textContent()).resolves.toContain(HOSTILE.replaceAll('"', '\\"'));
    expect(await page.locator(".event img").count()).toBe(0);
    expect(await page.title()).not.toBe("pwned");
    await shot("timeline");

    // The next page continues the numbering and ends with the last turn's end.
    await page.click("#next-page");
    const later = await page.locator(".event").evaluateAll((els) => els.map((e) => [e.id, e.getAttribute("data-type")]));
    expect(later[0]![0]).toBe("event-21");
    expect(later.length).toBe(2);
    expect(later.at(-1)![1]).toBe("TurnEnded");
  }, 45_000);

  test("as of an event: the conversation as it stood then, stepping forward event by event", async () => {
    await page.goto(url(`/console/apps/app_default/sessions/${sessionId}`));
    // Just after the first message: the question, no reply yet.
    const link = page.locator('.event[data-type="MessageSent"]').first().locator("a.as-of");
    const start = Number(new URL(url(await link.getAttribute("href") ?? "")).searchParams.get("n"));
    expect(start).toBe(2);
    await link.click();
    const messages = () => page.locator(".conversation .message").evaluateAll((els) => els.map((e) => e.classList.contains("user") ? "user" : "assistant"));
    expect(await messages()).toEqual(["user"]);
    await expect(page.locator(".conversation").textContent()).resolves.toContain(HOSTILE);
    expect(await page.locator(".conversation img").count()).toBe(0);

    // Step forward until the reply is part of the conversation (the turn's end), one event at a time.
    let steps = 0;
    while ((await messages()).length < 2 && steps < 25) {
      const next = page.locator("#next-event");
      expect(await next.count()).toBe(1);
      await next.click();
      steps++;
    }
    expect(await messages()).toEqual(["user", "assistant"]);
    expect(steps).toBeGreaterThan(1);
    await expect(page.locator("h2").first().textContent()).resolves.toContain(`event #${start + steps}`);
    await shot("as-of");
  }, 45_000);

  test("verify: every stream of the session (its own and its jobs') keeps its hash chain", async () => {
    // Verifying reads and changes nothing, so a form post the browser never completes (seen, rarely,
    // with the suite loading both cores) is sent once more rather than failing the run.
    for (let attempt = 1; ; attempt++) {
      await page.goto(url(`/console/apps/app_default/sessions/${sessionId}`));
      await page.click("#verify");
      const shown = await page.locator("#verdict").waitFor({ timeout: 10_000 }).then(() => true, () => false);
      if (shown || attempt === 2) break;
    }
    await expect(page.locator("#verdict").textContent()).resolves.toContain("All 4 streams verify");
    const streams = await page.locator("#verification tbody tr").evaluateAll((els) => els.map((e) => e.getAttribute("data-stream")));
    expect(streams[0]).toBe(`session-${sessionId}`);
    expect(streams.slice(1).every((s) => s!.startsWith("job-"))).toBe(true);
    await shot("verify");
  }, 45_000);

  test("operators: read models with lag, jobs by status, queue depth; a rebuild runs to done", async () => {
    await page.goto(url("/console/operator"));
    const row = page.locator('#projections tr[data-projection="sessions"]');
    await expect(row.locator(".lag").textContent()).resolves.toContain("0 events");
    expect(await page.locator('#job-counts tr[data-status="completed"] td').textContent()).toBe("3");
    expect(await page.locator("#queue .depth").textContent()).toBe("0");

    const release = holdNextRebuild();
    await row.locator("button.rebuild-button").click();
    expect(dialogs.at(-1)).toContain("Rebuild sessions");
    await expect(page.locator(".notice").textContent()).resolves.toContain("rebuild started");
    // Drawn running, part way through the store, its button disabled while it runs.
    const cell = page.locator('[data-projection-rebuild="sessions"]');
    await page.locator('[data-projection-rebuild="sessions"][data-state="running"]').waitFor();
    await expect(cell.locator(".rebuild-state").textContent()).resolves.toBe("running");
    // (The page may be drawn before the first batch is in; then its polling brings the count.)
    await cell.locator(".rebuild-counts", { hasText: /^2000\/\d+ events/ }).waitFor();
    const partWay = await cell.locator("progress").evaluate((el) => (el as unknown as { value: number }).value);
    expect(partWay).toBeGreaterThan(0);
    expect(partWay).toBeLessThan(1);
    expect(await row.locator("button.rebuild-button").isDisabled()).toBe(true);
    await shot("operator", true);
    // Let it finish: only the page's own polling can now show it done (the page is not reloaded).
    release();
    await page.locator('[data-projection-rebuild="sessions"][data-state="done"]').waitFor({ timeout: 20_000 });
    expect(await cell.locator(".rebuild-state").textContent()).toBe("done");
    expect(await cell.locator("progress").evaluate((el) => (el as unknown as { value: number }).value)).toBe(1);
    await expect(cell.locator(".rebuild-counts").textContent()).resolves.toMatch(/^(\d+)\/\1 events$/);
    expect(await row.locator("button.rebuild-button").isDisabled()).toBe(false);
    expect(new URL(page.url()).searchParams.get("notice")).toBe("rebuild_started");

    // The rebuilt read model answers as before.
    await page.goto(url("/console/sessions?by=user_id&q=customer-1042"));
    expect(await page.locator("#sessions tbody tr").getAttribute("data-session")).toBe(sessionId);
  }, 60_000);

  test("jobs by status", async () => {
    await page.goto(url("/console/operator"));
    await page.click('#job-counts tr[data-status="completed"] a');
    expect(new URL(page.url()).searchParams.get("status")).toBe("completed");
    const jobs = page.locator("#jobs tbody tr");
    expect(await jobs.count()).toBe(3);
    expect(await jobs.first().locator("a").textContent()).toBe(sessionId);
    await shot("jobs");
    await page.click('nav.tabs a:has-text("failed")');
    await expect(page.locator(".empty").textContent()).resolves.toContain("No jobs");
  }, 45_000);

  test("apps and keys: revoking a key refuses it at once", async () => {
    expect((await api(server.url, backendKey).get("/v1/sessions")).status).toBe(200);
    await page.goto(url("/console/apps"));
    await page.click(`#apps a:has-text("${acmeId}")`);
    const keyRow = page.locator("#keys tbody tr", { hasText: "backend" });
    await expect(keyRow.locator(".key-state").textContent()).resolves.toBe("active");
    await shot("apps");
    const [answer] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === "POST" && r.url().endsWith("/revoke")),
      keyRow.locator("button.danger").click(),
    ]);
    expect(dialogs.at(-1)).toContain("Revoke backend");
    await expect(page.locator(".notice").textContent()).resolves.toContain("revoked");
    await expect(page.locator("#keys tbody tr", { hasText: "backend" }).locator(".key-state").textContent()).resolves.toBe("revoked");
    expect((await api(server.url, backendKey).get("/v1/sessions")).status).toBe(401);
    // The app's stream records who revoked it, and the console request that did.
    const history = await api(server.url, "").get(`/v1/apps/${acmeId}/audit/streams/app-${acmeId}`, { authorization: `Bearer ${ROOT}` });
    const revoked = history.body.data.at(-1);
    expect(revoked).toMatchObject({ type: "ApiKeyRevoked", actor: "root:root" });
    expect(revoked.request_id).toBe(answer.headers()["x-request-id"]);
  }, 45_000);

  test("a cross-origin POST, or one without the page's form token, is refused even with the login cookie", async () => {
    const [cookie] = await context.cookies();
    await page.goto(url(`/console/apps/${acmeId}`));
    const csrf = await page.locator("#keys input[name=csrf]").first().getAttribute("value");
    const keys = (await api(server.url, "").get(`/v1/apps/${acmeId}/keys`, { authorization: `Bearer ${ROOT}` })).body.data;
    const other = keys.find((k: any) => k.name === "reporting");
    const post = (headers: Record<string, string>, body: string) => fetch(url(`/console/apps/${acmeId}/keys/${other.id}/revoke`), {
      method: "POST", redirect: "manual", body,
      headers: { cookie: `${cookie!.name}=${cookie!.value}`, "content-type": "application/x-www-form-urlencoded", ...headers },
    });
    const forged: Array<[Record<string, string>, string]> = [
      [{ origin: "http://evil.example" }, `csrf=${csrf}`], [{ origin: "null" }, `csrf=${csrf}`], [{}, `csrf=${csrf}`],
      [{ origin: server.url }, "csrf=not-the-token"], [{ origin: server.url }, "x=1"],
    ];
    for (const [headers, body] of forged) {
      const r = await post(headers, body);
      expect(r.status).toBe(403);
      expect(await r.text()).toContain("cross_origin_refused");
    }
    expect((await api(server.url, otherKey).get("/v1/sessions")).status).toBe(200);
    // Every page carries the policy that keeps scripts to the console's own.
    const res = await fetch(url("/console/login"));
    expect(res.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(res.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
  }, 45_000);

  test("logging out ends the login: the old cookie no longer opens a page", async () => {
    const [cookie] = await context.cookies();
    await page.goto(url("/console/sessions"));
    await page.click("header form button");
    expect(new URL(page.url()).pathname).toBe("/console/login");
    await expect(page.locator(".notice").textContent()).resolves.toContain("logged out");
    const replay = await fetch(url("/console/operator"), { redirect: "manual", headers: { cookie: `${cookie!.name}=${cookie!.value}` } });
    expect(replay.status).toBe(303);
    expect(replay.headers.get("location")).toStartWith("/console/login");
  }, 45_000);
});
