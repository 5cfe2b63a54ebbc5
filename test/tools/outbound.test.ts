/**
 * HTTP tools reach public addresses only. The address classifier is tested as a unit (private,
 * link-local and metadata ranges are never contacted); live requests go only to loopback forms, and
 * must be refused with the target receiving nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { classifyAddress } from "../../src/net/addressPolicy.ts";
import { httpTool, PUBLIC_ONLY, type OutboundPolicy } from "../../src/tools/httpTool.ts";
import type { ToolContext } from "../../src/tools/tool.ts";

describe("the address classifier", () => {
  const cases: Array<[string, string]> = [
    ["8.8.8.8", "public"], ["2606:4700:4700::1111", "public"], ["::ffff:8.8.8.8", "public"],
    ["127.0.0.1", "loopback"], ["127.255.0.9", "loopback"], ["::1", "loopback"], ["::ffff:127.0.0.1", "loopback"],
    ["64:ff9b::7f00:1", "loopback"], ["2002:7f00:1::", "loopback"],
    ["10.0.0.1", "private"], ["172.16.5.4", "private"], ["172.31.255.255", "private"], ["192.168.1.1", "private"],
    ["100.64.0.1", "private"], ["fc00::1", "private"], ["fd12:3456::1", "private"], ["::ffff:10.0.0.1", "private"],
    ["169.254.1.1", "link_local"], ["fe80::1", "link_local"],
    ["169.254.169.254", "metadata"], ["fd00:ec2::254", "metadata"], ["169.254.170.2", "metadata"], ["100.100.100.200", "metadata"],
    ["::ffff:169.254.169.254", "metadata"],
    ["0.0.0.0", "unspecified"], ["::", "unspecified"], ["224.0.0.1", "multicast"], ["ff02::1", "multicast"],
    ["255.255.255.255", "reserved"], ["192.0.2.1", "reserved"], ["2001:db8::1", "reserved"],
  ];
  for (const [address, kind] of cases) test(`${address} is ${kind}`, () => expect(classifyAddress(address)).toBe(kind));
  test("something that is not an address is refused", () => expect(() => classifyAddress("not-an-ip")).toThrow());
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

  const context = (): ToolContext => ({ jobId: "job_t", sessionId: null, signal: new AbortController().signal, registerAsset: async () => { throw new Error("unused"); } });
  const call = (url: string, policy: OutboundPolicy = PUBLIC_ONLY) =>
    httpTool({ type: "http", name: "probe", description: "", url, parameters: { type: "object" } }, policy).execute({}, context());

  for (const form of ["127.0.0.1", "127.1", "2130706433", "0x7f.1", "[::1]", "localhost"]) {
    test(`http://${form}:<port> is refused by default and the target gets nothing`, async () => {
      const before = hits.length;
      await expect(call(`http://${form}:${target.port}/direct`)).rejects.toThrow(/refused|does not resolve/);
      expect(hits.length).toBe(before);
    });
  }

  test("a redirect to loopback is refused, even from a target the operator allowed", async () => {
    const before = hits.length;
    const allowRedirectorOnly = { privateAllowlist: [`127.0.0.1:${redirector.port}`] };
    await expect(call(`http://127.0.0.1:${redirector.port}/start`, allowRedirectorOnly)).rejects.toThrow(/refused: 127\.0\.0\.1 is a loopback address/);
    expect(hits.length).toBe(before);
    // Allowed all the way, the redirect is followed.
    expect(await call(`http://127.0.0.1:${redirector.port}/start`, { privateAllowlist: ["127.0.0.1"] })).toEqual({ result: { ok: true } });
    expect(hits.at(-1)).toBe("/after-redirect");
  });

  test("a reply larger than the cap is refused while it streams, without reading the rest", async () => {
    await expect(call(`http://127.0.0.1:${big.port}/`, { privateAllowlist: ["*"] })).rejects.toThrow(/more than 1048576 bytes/);
    for (let i = 0; i < 100 && !bigCancelled; i++) await Bun.sleep(20);
    expect(bigCancelled).toBe(true);
  });

  test("schemes other than http(s) are refused", async () => {
    await expect(call("file:///etc/passwd", { privateAllowlist: ["*"] })).rejects.toThrow(/only http and https/);
  });
});
