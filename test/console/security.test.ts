/**
 * The console's pure safeguards, without a browser: escaping, the Origin rule for actions, the login
 * cookie, and how logins end (absolute expiry, a JWT's own expiry, idleness, logout, the cap).
 */
import { describe, expect, test } from "bun:test";
import { ROOT_PRINCIPAL } from "../../src/auth/management.ts";
import { escapeHtml, href, html } from "../../src/console/html.ts";
import { ConsoleLogins } from "../../src/console/logins.ts";
import { cookieLogin, loginCookie, sameOrigin } from "../../src/console/security.ts";

describe("html", () => {
  test("every interpolated value is escaped, fragments and lists are kept as markup", () => {
    const hostile = `<script>alert("x")</script>&'`;
    expect(html`<p title="${hostile}">${hostile}</p>`.value).toBe(
      "<p title=\"&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;\">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;</p>",
    );
    expect(html`<ul>${["a<", "b"].map((x) => html`<li>${x}</li>`)}</ul>`.value).toBe("<ul><li>a&lt;</li><li>b</li></ul>");
    expect(html`${null}${undefined}${false}${0}`.value).toBe("0");
    expect(escapeHtml(`"'<>&`)).toBe("&quot;&#39;&lt;&gt;&amp;");
  });

  test("console links encode their segments and query", () => {
    expect(href(["apps", "a/b", "sessions", "s 1"], { at: "12", mode: undefined, q: "x&y" })).toBe("/console/apps/a%2Fb/sessions/s%201?at=12&q=x%26y");
  });
});

describe("actions come from the console's own origin", () => {
  const post = (headers: Record<string, string>, url = "http://127.0.0.1:8080/console/logout") => new Request(url, { method: "POST", headers });

  test("the Origin must name the host the browser addressed (or the public base URL)", () => {
    expect(sameOrigin(post({ origin: "http://127.0.0.1:8080", host: "127.0.0.1:8080" }))).toBe(true);
    expect(sameOrigin(post({ origin: "http://localhost:8080", host: "localhost:8080" }))).toBe(true);
    expect(sameOrigin(post({ origin: "https://agents.example.com", host: "10.0.0.5:8080" }), "https://agents.example.com/")).toBe(true);
    for (const origin of ["http://evil.example", "http://127.0.0.1:8081", "null", "file://", "not a url"]) {
      expect({ origin, same: sameOrigin(post({ origin, host: "127.0.0.1:8080" }), "https://agents.example.com") }).toEqual({ origin, same: false });
    }
    expect(sameOrigin(post({ host: "127.0.0.1:8080" }))).toBe(false);
  });

  test("the login cookie is HttpOnly and SameSite=Strict; over plain HTTP scoped to /console, over HTTPS __Host- and Secure", () => {
    const plain = loginCookie(new Request("http://127.0.0.1:8080/console/login"), "abc", 60);
    expect(plain).toBe("agentry_console=abc; Path=/console; HttpOnly; SameSite=Strict; Max-Age=60");
    const secure = "__Host-agentry_console=abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=60; Secure";
    expect(loginCookie(new Request("https://agents.example.com/console/login"), "abc", 60)).toBe(secure);
    expect(loginCookie(new Request("http://10.0.0.5/console/login", { headers: { "x-forwarded-proto": "https" } }), "abc", 60)).toBe(secure);
    expect(loginCookie(new Request("http://127.0.0.1/console/logout"), null, 0)).toBe("agentry_console=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0");
    expect(loginCookie(new Request("https://agents.example.com/console/logout"), null, 0)).toBe("__Host-agentry_console=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure");
  });

  test("only a well-formed login id is read from the cookies", () => {
    const id = "A".repeat(43);
    const withCookie = (cookie: string) => new Request("http://x/console", { headers: { cookie } });
    expect(cookieLogin(withCookie(`other=1; agentry_console=${id}; more=2`))).toBe(id);
    expect(cookieLogin(withCookie("agentry_console=short"))).toBeNull();
    expect(cookieLogin(withCookie(`agentry_console=${"A".repeat(40)};x`))).toBe("A".repeat(40));
    expect(cookieLogin(withCookie(`agentry_console="${id}"`))).toBeNull();
    expect(cookieLogin(new Request("http://x/console"))).toBeNull();
    // Over HTTPS only the __Host- cookie is read (a plain one may have been set by a sibling subdomain).
    const overHttps = (c: string) => new Request("https://x/console", { headers: { cookie: c } });
    expect(cookieLogin(overHttps(`agentry_console=${id}`))).toBeNull();
    expect(cookieLogin(overHttps(`agentry_console=${"B".repeat(43)}; __Host-agentry_console=${id}`))).toBe(id);
    expect(cookieLogin(withCookie(`__Host-agentry_console=${id}`))).toBeNull();
  });
});

describe("console logins", () => {
  test("a login lasts until its expiry, a JWT's sooner expiry, or an idle hour; logout ends it", () => {
    let now = 1_000_000;
    const logins = new ConsoleLogins({ ttlMs: 8 * 3_600_000, idleMs: 3_600_000, now: () => now });
    const a = logins.create(ROOT_PRINCIPAL);
    expect(a.expiresAt).toBe(now + 8 * 3_600_000);
    expect(logins.use(a.id)?.principal).toEqual(ROOT_PRINCIPAL);
    // Kept alive by use, up to the absolute expiry.
    for (let i = 0; i < 7; i++) {
      now += 3_000_000;
      expect(logins.use(a.id)).not.toBeNull();
    }
    now = a.expiresAt;
    expect(logins.use(a.id)).toBeNull();

    const b = logins.create(ROOT_PRINCIPAL, now + 60_000);
    expect(b.expiresAt).toBe(now + 60_000);
    now += 60_000;
    expect(logins.use(b.id)).toBeNull();

    const c = logins.create(ROOT_PRINCIPAL);
    now += 3_600_000;
    expect(logins.use(c.id)).toBeNull();

    const d = logins.create(ROOT_PRINCIPAL);
    logins.end(d.id);
    expect(logins.use(d.id)).toBeNull();
    expect(logins.use(null)).toBeNull();
  });

  test("each login has its own random id and form token; past the cap the oldest goes", () => {
    const logins = new ConsoleLogins({ maxLogins: 2 });
    const [a, b, c] = [logins.create(ROOT_PRINCIPAL), logins.create(ROOT_PRINCIPAL), logins.create(ROOT_PRINCIPAL)];
    expect(new Set([a.id, b.id, c.id]).size).toBe(3);
    expect(logins.use(a.id)).toBeNull();
    const [lb, lc] = [logins.use(b.id)!, logins.use(c.id)!];
    expect(lb.csrf).not.toBe(lc.csrf);
    expect(lb.csrf).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(logins.size).toBe(2);
  });
});
