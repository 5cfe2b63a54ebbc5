/**
 * HTTP tools reach public addresses only. The address classifier is tested as a unit (private,
 * link-local and metadata ranges are never contacted); live requests go only to loopback forms, and
 * must be refused with the target receiving nothing. Host names other than `localhost` are never
 * resolved by the system here: the tests that need DNS answers substitute the resolver.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { classifyAddress, type AddressClass } from "../../src/net/addressPolicy.ts";
import { allowedPrivately, guardedFetch, OutboundError, refusalFor, type ResolveHost } from "../../src/net/outbound.ts";
import { httpTool, MAX_RESPONSE_BYTES, PUBLIC_ONLY, type OutboundPolicy } from "../../src/tools/httpTool.ts";
import { ToolError, type ToolContext } from "../../src/tools/tool.ts";

describe("the address classifier", () => {
  const cases: Array<[string, AddressClass]> = [
    ["8.8.8.8", "public"], ["2606:4700:4700::1111", "public"], ["::ffff:8.8.8.8", "public"], ["172.32.0.1", "public"],
    ["127.0.0.1", "loopback"], ["127.255.0.9", "loopback"], ["::1", "loopback"], ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"], ["64:ff9b::7f00:1", "loopback"], ["2002:7f00:1::", "loopback"],
    // Loose IPv4 spellings, as a resolver or a hand-written host might give them.
    ["127.1", "loopback"], ["2130706433", "loopback"], ["0x7f.1", "loopback"], ["0177.0.0.1", "loopback"], ["[::1]", "loopback"],
    ["10.0.0.1", "private"], ["172.16.5.4", "private"], ["172.31.255.255", "private"], ["192.168.1.1", "private"],
    ["100.64.0.1", "private"], ["100.127.255.254", "private"], ["fc00::1", "private"], ["fd12:3456::1", "private"],
    ["::ffff:10.0.0.1", "private"], ["64:ff9b::c0a8:101", "private"], ["2002:c0a8:101::", "private"],
    ["169.254.1.1", "link_local"], ["fe80::1", "link_local"], ["fe80::1%eth0", "link_local"], ["::ffff:169.254.1.1", "link_local"],
    ["169.254.169.254", "metadata"], ["fd00:ec2::254", "metadata"], ["169.254.170.2", "metadata"], ["100.100.100.200", "metadata"],
    ["192.0.0.192", "metadata"], ["168.63.129.16", "metadata"],
    ["::ffff:169.254.169.254", "metadata"], ["64:ff9b::a9fe:a9fe", "metadata"], ["2002:a9fe:a9fe::", "metadata"],
    ["0.0.0.0", "unspecified"], ["0.1.2.3", "unspecified"], ["::", "unspecified"],
    ["224.0.0.1", "multicast"], ["239.255.255.250", "multicast"], ["ff02::1", "multicast"],
    ["255.255.255.255", "reserved"], ["192.0.2.1", "reserved"], ["198.51.100.1", "reserved"], ["203.0.113.1", "reserved"],
    ["198.18.0.1", "reserved"], ["240.0.0.1", "reserved"], ["2001:db8::1", "reserved"], ["fec0::1", "reserved"],
  ];
  for (const [address, kind] of cases) test(`${address} is ${kind}`, () => expect(classifyAddress(address)).toBe(kind));
  test("something that is not an address is refused", () => expect(() => classifyAddress("not-an-ip")).toThrow());

  test("URL parsing turns loose loopback spellings into addresses the classifier sees as loopback", () => {
    const forms = ["127.1", "2130706433", "0x7f.1", "0x7f000001", "0177.0.0.1", "127.000.000.001", "[::1]", "[0:0:0:0:0:0:0:1]", "[::ffff:127.0.0.1]"];
    for (const form of forms) {
      const host = new URL(`http://${form}:81/`).hostname;
      expect({ form, kind: classifyAddress(host) }).toEqual({ form, kind: "loopback" });
    }
  });
});

describe("the outbound policy", () => {
  test("one non-public address among a host's addresses refuses the host, naming it", () => {
    expect(refusalFor("tools.example", ["93.184.216.34", "10.0.0.7"], false)).toMatch(/^tools\.example \(10\.0\.0\.7\) is a private address; .*TOOL_PRIVATE_ALLOWLIST/);
    expect(refusalFor("169.254.169.254", ["169.254.169.254"], false)).toMatch(/^the address 169\.254\.169\.254 is a metadata address/);
    expect(refusalFor("tools.example", ["93.184.216.34", "2606:4700:4700::1111"], false)).toBeNull();
    expect(refusalFor("tools.example", [], false)).toMatch(/has no address/);
    expect(refusalFor("tools.example", ["10.0.0.7"], true)).toBeNull();
  });

  test("the operator's list names hosts, with or without a port", () => {
    const url = (u: string) => new URL(u);
    expect(allowedPrivately({ privateAllowlist: [] }, url("http://127.0.0.1/"))).toBe(false);
    expect(allowedPrivately({ privateAllowlist: ["*"] }, url("http://10.0.0.1/"))).toBe(true);
    expect(allowedPrivately({ privateAllowlist: ["LOCALHOST"] }, url("http://localhost:9000/"))).toBe(true);
    expect(allowedPrivately({ privateAllowlist: ["127.0.0.1:9000"] }, url("http://127.0.0.1:9000/"))).toBe(true);
    expect(allowedPrivately({ privateAllowlist: ["127.0.0.1:9000"] }, url("http://127.0.0.1:9001/"))).toBe(false);
    expect(allowedPrivately({ privateAllowlist: ["127.0.0.1:80"] }, url("http://127.1/"))).toBe(true);
    expect(allowedPrivately({ privateAllowlist: ["[::1]:9000"] }, url("http://[::1]:9000/"))).toBe(true);
    expect(allowedPrivately({ privateAllowlist: ["::1"] }, url("http://[::1]:9000/"))).toBe(true);
  });
});

const context = (signal = new AbortController().signal): ToolContext => ({
  jobId: "job_t", sessionId: null, signal, registerAsset: async () => { throw new Error("unused"); },
});

describe("live requests to loopback forms", () => {
  const hits: string[] = [];
  let target: ReturnType<typeof Bun.serve>;
  let redirector: ReturnType<typeof Bun.serve>;
  let big: ReturnType<typeof Bun.serve>;
  let bigCancelled = false;
  beforeAll(() => {
    target = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: (req) => { hits.push(new URL(req.url).pathname); return Response.json({ ok: true }); } });
    redirector = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response(null, { status: 307, headers: { location: `http://127.0.0.1:${target.port}/after-redirect` } }) });
    big = Bun.serve({ port: 0, hostname: "127.0.0.1", idleTimeout: 0, fetch: () => new Response(new ReadableStream({
      async pull(c) { c.enqueue(new TextEncoder().encode("x".repeat(64 * 1024))); await Bun.sleep(1); },
      cancel() { bigCancelled = true; },
    })) });
  });
  afterAll(() => {
    target.stop(true);
    redirector.stop(true);
    big.stop(true);
  });

  const call = (url: string, policy: OutboundPolicy = PUBLIC_ONLY) =>
    httpTool({ type: "http", name: "probe", description: "", url, parameters: { type: "object" } }, policy).execute({}, context());

  for (const form of ["127.0.0.1", "127.1", "2130706433", "0x7f.1", "[::1]", "localhost"]) {
    test(`http://${form}:<port> is refused by default and the target gets nothing`, async () => {
      const before = hits.length;
      const refusal = call(`http://${form}:${target.port}/direct`);
      await expect(refusal).rejects.toThrow(ToolError);
      await expect(refusal).rejects.toThrow(/^probe refused: .* is a loopback address; .*TOOL_PRIVATE_ALLOWLIST/);
      expect(hits.length).toBe(before);
    });
  }

  test("a redirect to loopback is refused, even from a target the operator allowed", async () => {
    const before = hits.length;
    const allowRedirectorOnly = { privateAllowlist: [`127.0.0.1:${redirector.port}`] };
    await expect(call(`http://127.0.0.1:${redirector.port}/start`, allowRedirectorOnly)).rejects.toThrow(/refused: the address 127\.0\.0\.1 is a loopback address/);
    expect(hits.length).toBe(before);
    // Allowed all the way, the redirect is followed.
    expect(await call(`http://127.0.0.1:${redirector.port}/start`, { privateAllowlist: ["127.0.0.1"] })).toEqual({ result: { ok: true } });
    expect(hits.at(-1)).toBe("/after-redirect");
  });

  test("a reply larger than the cap is refused while it streams, without reading the rest", async () => {
    await expect(call(`http://127.0.0.1:${big.port}/`, { privateAllowlist: ["*"] })).rejects.toThrow(`probe answered more than ${MAX_RESPONSE_BYTES} bytes`);
    for (let i = 0; i < 100 && !bigCancelled; i++) await Bun.sleep(20);
    expect(bigCancelled).toBe(true);
  });

  test("schemes other than http(s) are refused", async () => {
    await expect(call("file:///etc/passwd", { privateAllowlist: ["*"] })).rejects.toThrow(/only http and https/);
  });
});

describe("the connection goes to the address that was checked", () => {
  // Two servers on one port: 127.0.0.2 plays the address the check saw, 127.0.0.1 the one the
  // system resolver gives for `localhost` at connect time (a DNS answer that changed in between).
  let checked: ReturnType<typeof Bun.serve>;
  let rebound: ReturnType<typeof Bun.serve>;
  const seen: Array<{ server: string; host: string | null }> = [];
  beforeAll(() => {
    for (let attempt = 0; ; attempt++) {
      checked = Bun.serve({ port: 0, hostname: "127.0.0.2", fetch: (req) => { seen.push({ server: "checked", host: req.headers.get("host") }); return Response.json({ server: "checked" }); } });
      try {
        rebound = Bun.serve({ port: checked.port, hostname: "127.0.0.1", fetch: (req) => { seen.push({ server: "rebound", host: req.headers.get("host") }); return Response.json({ server: "rebound" }); } });
        return;
      } catch (err) {
        checked.stop(true);
        if (attempt >= 5) throw err;
      }
    }
  });
  afterAll(() => {
    checked.stop(true);
    rebound.stop(true);
  });

  const tool = (url: string, resolve: ResolveHost) =>
    httpTool({ type: "http", name: "probe", description: "", url, parameters: { type: "object" } }, { privateAllowlist: ["localhost"] }, { resolve });

  test("a name is called at the address its check resolved, under its own name", async () => {
    seen.length = 0;
    const result = await tool(`http://localhost:${checked.port}/`, async () => ["127.0.0.2"]).execute({}, context());
    expect(result).toEqual({ result: { server: "checked" } });
    expect(seen).toEqual([{ server: "checked", host: `localhost:${checked.port}` }]);
  });

  test("when a checked address refuses the connection, the next checked one is tried", async () => {
    seen.length = 0;
    // Nothing listens on 127.0.0.3 at this port.
    const result = await tool(`http://localhost:${checked.port}/`, async () => ["127.0.0.3", "127.0.0.2"]).execute({}, context());
    expect(result).toEqual({ result: { server: "checked" } });
    expect(seen.map((s) => s.server)).toEqual(["checked"]);
  });

  test("a name that does not resolve is a tool error", async () => {
    const failing = tool(`http://localhost:${checked.port}/`, async () => { throw Object.assign(new Error("not found"), { code: "ENOTFOUND" }); });
    await expect(failing.execute({}, context())).rejects.toThrow(/^probe could not be reached: localhost does not resolve$/);
  });
});

describe("HTTPS keeps the name while connecting to the checked address", () => {
  const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), "utf8");
  const ca = fixture("localhost.cert.pem") + fixture("elsewhere.test.cert.pem");
  const resolve: ResolveHost = async () => ["127.0.0.1"];
  const request = () => ({ method: "GET", headers: {}, signal: AbortSignal.timeout(10_000) });
  let good: ReturnType<typeof Bun.serve>;
  let wrongName: ReturnType<typeof Bun.serve>;
  beforeAll(() => {
    good = Bun.serve({ port: 0, hostname: "127.0.0.1", tls: { cert: fixture("localhost.cert.pem"), key: fixture("localhost.key.pem") }, fetch: (req) => Response.json({ host: req.headers.get("host") }) });
    wrongName = Bun.serve({ port: 0, hostname: "127.0.0.1", tls: { cert: fixture("elsewhere.test.cert.pem"), key: fixture("elsewhere.test.key.pem") }, fetch: () => Response.json({ reached: true }) });
  });
  afterAll(() => {
    good.stop(true);
    wrongName.stop(true);
  });

  test("the certificate is checked against the host name, not the address", async () => {
    // The certificate names localhost only, so this succeeds only if the name, not 127.0.0.1, is checked.
    const res = await guardedFetch(new URL(`https://localhost:${good.port}/`), request(), { policy: { privateAllowlist: ["localhost"] }, maxBytes: 1024, maxRedirects: 0, resolve, ca });
    expect({ status: res.status, body: JSON.parse(res.text) }).toEqual({ status: 200, body: { host: `localhost:${good.port}` } });
  });

  test("a certificate for another name is refused", async () => {
    const call = guardedFetch(new URL(`https://localhost:${wrongName.port}/`), request(), { policy: { privateAllowlist: ["localhost"] }, maxBytes: 1024, maxRedirects: 0, resolve, ca });
    await expect(call).rejects.toThrow(OutboundError);
    await expect(call).rejects.toThrow(/could not be reached: .*ALTNAME/);
  });
});

describe("redirects and slow replies", () => {
  const received: Array<{ server: string; auth: string | null; job: string | null; method: string }> = [];
  let other: ReturnType<typeof Bun.serve>;
  let origin: ReturnType<typeof Bun.serve>;
  let stalled: ReturnType<typeof Bun.serve>;
  beforeAll(() => {
    const record = (server: string, req: Request) => received.push({ server, auth: req.headers.get("authorization"), job: req.headers.get("x-agentry-job-id"), method: req.method });
    other = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: (req) => { record("other", req); return Response.json({ at: "other" }); } });
    origin = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: (req) => {
      record("origin", req);
      const path = new URL(req.url).pathname;
      if (path === "/elsewhere") return new Response(null, { status: 302, headers: { location: `http://127.0.0.1:${other.port}/landing` } });
      if (path === "/here") return new Response(null, { status: 308, headers: { location: "/landing" } });
      return Response.json({ at: "origin" });
    } });
    stalled = Bun.serve({ port: 0, hostname: "127.0.0.1", idleTimeout: 0, fetch: () => new Response(new ReadableStream({
      start(c) { c.enqueue(new TextEncoder().encode("{\"partial\":")); },
    }), { headers: { "content-type": "application/json" } }) });
  });
  afterAll(() => {
    other.stop(true);
    origin.stop(true);
    stalled.stop(true);
  });

  const tool = (url: string, timeout_ms?: number) => httpTool(
    { type: "http", name: "probe", description: "", url, parameters: { type: "object" }, headers: { Authorization: "Bearer app-secret", "X-Agentry-Job-Id": "forged" }, ...(timeout_ms ? { timeout_ms } : {}) },
    { privateAllowlist: ["127.0.0.1"] },
  );

  test("the app's headers go to its own origin only; a redirect elsewhere does not carry them", async () => {
    received.length = 0;
    expect(await tool(`http://127.0.0.1:${origin.port}/elsewhere`).execute({}, context())).toEqual({ result: { at: "other" } });
    expect(received).toEqual([
      { server: "origin", auth: "Bearer app-secret", job: "job_t", method: "POST" },
      { server: "other", auth: null, job: "job_t", method: "GET" },
    ]);
    received.length = 0;
    expect(await tool(`http://127.0.0.1:${origin.port}/here`).execute({}, context())).toEqual({ result: { at: "origin" } });
    expect(received).toEqual([
      { server: "origin", auth: "Bearer app-secret", job: "job_t", method: "POST" },
      { server: "origin", auth: "Bearer app-secret", job: "job_t", method: "POST" },
    ]);
  });

  test("a reply that stops arriving ends as a timeout the model sees", async () => {
    const call = tool(`http://127.0.0.1:${stalled.port}/`, 300).execute({}, context());
    await expect(call).rejects.toThrow(ToolError);
    await expect(call).rejects.toThrow("probe timed out after 300 ms");
  });

  test("a cancelled job's call ends with the cancel, not a tool error", async () => {
    const cancel = new AbortController();
    const call = tool(`http://127.0.0.1:${stalled.port}/`).execute({}, context(cancel.signal));
    cancel.abort(new Error("job cancelled"));
    await expect(call).rejects.toThrow("job cancelled");
  });
});
