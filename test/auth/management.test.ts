/**
 * Management-plane authentication over a real SQLite event store: the root token (generated once,
 * replaced by ADMIN_TOKEN, agreed on by two store connections as by two processes), and JWTs (HS256,
 * RS256/ES256 against a JWKS server started here on 127.0.0.1, issuer/audience, the verified-token cache).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";
import { createManagementAuth, ROOT_PRINCIPAL, type ManagementAuth } from "../../src/auth/management.ts";
import { ConfigError, loadConfig } from "../../src/config.ts";
import { AppError } from "../../src/core/errors.ts";
import type { Logger } from "../../src/core/logger.ts";
import { keyHash } from "../../src/domain/app/keys.ts";
import { domainEvents } from "../../src/domain/catalog.ts";
import { rootTokenStream } from "../../src/domain/streams.ts";
import { SqliteEventStore } from "../../src/eventstore/adapters/sqlite.ts";
import { collect, type EventStore } from "../../src/eventstore/port.ts";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "agentry-mgmt-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** One store connection; two over one file behave as two processes do. */
function openStore(dir: string): SqliteEventStore {
  const store = new SqliteEventStore({ path: join(dir, "events.sqlite"), synchronous: "normal", pollIntervalMs: 20 });
  cleanups.push(() => store.close());
  return store;
}

/** A logger that keeps every line, to check what was logged. */
function recordingLogger(lines: string[]): Logger {
  const log = (level: string) => (msg: string, fields?: Record<string, unknown>) =>
    lines.push(JSON.stringify({ level, msg, ...fields }, (_k, v) => (typeof v === "bigint" ? v.toString() : v)));
  const logger: Logger = { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error"), child: () => logger, showSecretOnce: () => {} };
  return logger;
}

interface Started {
  auth: ManagementAuth;
  generatedRootToken: string | null;
  logs: string[];
}

async function start(store: EventStore, env: Record<string, string> = {}, now?: () => number): Promise<Started> {
  const logs: string[] = [];
  const config = loadConfig({ EVENT_STORE: "sqlite", ...env });
  const { auth, generatedRootToken } = await createManagementAuth({ store, config, logger: recordingLogger(logs), ...(now ? { now } : {}) });
  cleanups.push(() => auth.stop());
  return { auth, generatedRootToken, logs };
}

const request = (token?: string, scheme = "Bearer") =>
  new Request("http://127.0.0.1/v1/apps", { headers: token === undefined ? {} : { authorization: `${scheme} ${token}` } });

/** The error `authenticate` throws for this token (fails the test if it authenticates). */
async function refusal(auth: ManagementAuth, token?: string, scheme?: string): Promise<AppError> {
  try {
    const principal = await auth.authenticate(request(token, scheme));
    throw new Error(`expected a refusal, got ${JSON.stringify(principal)}`);
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    return err;
  }
}

async function expectInvalidToken(auth: ManagementAuth, token: string | undefined, message?: RegExp): Promise<void> {
  const err = await refusal(auth, token);
  expect({ status: err.status, code: err.code }).toEqual({ status: 401, code: "invalid_token" });
  if (message) expect(err.message).toMatch(message);
  if (token) expect(err.message).not.toContain(token);
}

const rootEvents = async (store: EventStore) => collect(store.readStream(rootTokenStream()));

/** Captures everything written to stdout/stderr and the console while `run` runs. */
async function captureOutput<T>(run: () => Promise<T>): Promise<{ result: T; output: string }> {
  const chunks: string[] = [];
  const out = process.stdout.write, err = process.stderr.write;
  const con = { log: console.log, info: console.info, warn: console.warn, error: console.error, debug: console.debug };
  const keep = (...args: unknown[]) => void chunks.push(args.map(String).join(" "));
  process.stdout.write = ((chunk: unknown) => (keep(chunk), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: unknown) => (keep(chunk), true)) as typeof process.stderr.write;
  Object.assign(console, { log: keep, info: keep, warn: keep, error: keep, debug: keep });
  try {
    return { result: await run(), output: chunks.join("\n") };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
    Object.assign(console, con);
  }
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 5000): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`not within ${timeoutMs} ms`);
    await Bun.sleep(10);
  }
  return Date.now() - started;
}

const ADMIN = "operator-chosen-root-token-0123456789";

describe("root token", () => {
  test("generated once on first start, stored only as a hash, reused on the next start, never printed", async () => {
    const dir = tempDir();
    const first = await captureOutput(() => start(openStore(dir)));
    const token = first.result.generatedRootToken!;
    expect(token).toMatch(/^agr_[A-Za-z0-9_-]{32}$/);
    expect(await first.result.auth.authenticate(request(token))).toEqual({ kind: "root", subject: "root", role: "owner", apps: "all" });
    await first.result.auth.stop();

    const second = await captureOutput(() => start(openStore(dir)));
    expect(second.result.generatedRootToken).toBeNull();
    expect(await second.result.auth.authenticate(request(token))).toBe(ROOT_PRINCIPAL);

    const store = openStore(dir);
    const events = await rootEvents(store);
    expect(events).toHaveLength(1);
    expect(domainEvents.decode(events[0]!)).toEqual({ type: "RootTokenSet", data: { hash: keyHash(token), prefix: token.slice(0, 8), source: "generated" } });
    // Nothing printed, nothing logged, nothing in the data folder holds the token.
    for (const text of [first.output, second.output, ...first.result.logs, ...second.result.logs]) expect(text).not.toContain(token);
    expect(first.result.logs.join("\n")).toContain("generated the root token");
    for (const file of readdirSync(dir)) expect(readFileSync(join(dir, file)).includes(Buffer.from(token))).toBe(false);
  });

  test("ADMIN_TOKEN replaces a generated token, which then stops working; the same ADMIN_TOKEN again writes nothing", async () => {
    const dir = tempDir();
    const generated = (await start(openStore(dir))).generatedRootToken!;
    const withAdmin = await start(openStore(dir), { ADMIN_TOKEN: ADMIN });
    expect(withAdmin.generatedRootToken).toBeNull();
    expect(await withAdmin.auth.authenticate(request(ADMIN))).toBe(ROOT_PRINCIPAL);
    await expectInvalidToken(withAdmin.auth, generated);
    expect(withAdmin.logs.join("\n")).not.toContain(ADMIN);

    const again = await start(openStore(dir), { ADMIN_TOKEN: ADMIN });
    expect(again.generatedRootToken).toBeNull();
    const events = (await rootEvents(openStore(dir))).map((e) => domainEvents.decode(e).data);
    expect(events).toMatchObject([{ source: "generated" }, { source: "env", hash: keyHash(ADMIN) }]);
    // Later starts without ADMIN_TOKEN keep the recorded one; they generate nothing.
    const without = await start(openStore(dir));
    expect(without.generatedRootToken).toBeNull();
    expect(await without.auth.authenticate(request(ADMIN))).toBe(ROOT_PRINCIPAL);
    await expectInvalidToken(without.auth, generated);
  });

  test("a token replaced through another process is refused by a running one, within a bounded wait", async () => {
    const dir = tempDir();
    const running = await start(openStore(dir));
    const old = running.generatedRootToken!;
    expect(await running.auth.authenticate(request(old))).toBe(ROOT_PRINCIPAL);
    await start(openStore(dir), { ADMIN_TOKEN: ADMIN }); // another process, its own connection
    const waited = await eventually(async () => (await refusal(running.auth, old).catch(() => null))?.code === "invalid_token");
    expect(waited).toBeLessThan(5000);
    expect(await running.auth.authenticate(request(ADMIN))).toBe(ROOT_PRINCIPAL);
    expect(running.logs.join("\n")).toContain("replaced by another process");
  });

  test("two processes starting at once on an empty store end with one token", async () => {
    const dir = tempDir();
    const real = openStore(dir);
    // B reads the empty store first, then A generates and records its token, then B appends: B loses
    // the race on the expected revision and must read again and keep A's token.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let bHasRead!: () => void;
    const bRead = new Promise<void>((resolve) => (bHasRead = resolve));
    const storeB: EventStore = Object.create(real, {
      readStream: { value: (...args: Parameters<EventStore["readStream"]>) => {
        const inner = real.readStream(...args);
        return (async function* () {
          try {
            yield* inner;
          } finally {
            bHasRead();
          }
        })();
      } },
      appendToStream: { value: async (...args: Parameters<EventStore["appendToStream"]>) => {
        await gate;
        return real.appendToStream(...args);
      } },
      subscribeToStream: { value: real.subscribeToStream.bind(real) },
    });
    const b = start(storeB);
    await bRead;
    const a = await start(openStore(dir));
    release();
    const bStarted = await b;
    expect(a.generatedRootToken).toMatch(/^agr_/);
    expect(bStarted.generatedRootToken).toBeNull();
    expect(await rootEvents(real)).toHaveLength(1);
    expect(await bStarted.auth.authenticate(request(a.generatedRootToken!))).toBe(ROOT_PRINCIPAL);

    // And two starting concurrently without any forcing.
    const dir2 = tempDir();
    const both = await Promise.all([start(openStore(dir2)), start(openStore(dir2))]);
    const tokens = both.map((s) => s.generatedRootToken).filter((t) => t !== null);
    expect(tokens).toHaveLength(1);
    expect(await rootEvents(openStore(dir2))).toHaveLength(1);
    for (const s of both) expect(await s.auth.authenticate(request(tokens[0]!))).toBe(ROOT_PRINCIPAL);
  });

  test("missing, malformed, unknown and data-plane credentials are 401 invalid_token", async () => {
    const { auth, generatedRootToken } = await start(openStore(tempDir()));
    await expectInvalidToken(auth, undefined, /Missing management token/);
    expect((await refusal(auth, generatedRootToken!, "Basic")).code).toBe("invalid_token");
    await expectInvalidToken(auth, "agk_live_0123456789abcdefghijklmnopqrstuv", /Invalid management token/);
    await expectInvalidToken(auth, generatedRootToken!.slice(0, -1) + (generatedRootToken!.endsWith("A") ? "B" : "A"));
  });
});

const SECRET = "s".repeat(16) + "-0123456789abcdef-hs256";
const enc = new TextEncoder();
const nowS = () => Math.floor(Date.now() / 1000);

function hs256(claims: Record<string, unknown>, options: { secret?: string; exp?: number | null } = {}): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuedAt();
  if (options.exp !== null) jwt.setExpirationTime(options.exp ?? nowS() + 600);
  return jwt.sign(enc.encode(options.secret ?? SECRET));
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

describe("HS256 JWTs", () => {
  test("a valid token gives its subject, role and apps; \"*\" is every app", async () => {
    const { auth } = await start(openStore(tempDir()), { MANAGEMENT_JWT_SECRET: SECRET });
    expect(await auth.authenticate(request(await hs256({ sub: "alice@example.com", role: "admin", apps: ["app_a", "app_b"] })))).toEqual({
      kind: "jwt", subject: "alice@example.com", role: "admin", apps: ["app_a", "app_b"],
    });
    expect(await auth.authenticate(request(await hs256({ sub: "ops", role: "owner", apps: "*" })))).toEqual({ kind: "jwt", subject: "ops", role: "owner", apps: "all" });
    expect(await auth.authenticate(request(await hs256({ sub: "bob", role: "member", apps: [] })))).toMatchObject({ role: "member", apps: [] });
  });

  test("expired, wrong secret, alg none, no exp, no sub, missing or unknown role, bad apps: each refused with its reason", async () => {
    const { auth } = await start(openStore(tempDir()), { MANAGEMENT_JWT_SECRET: SECRET });
    const ok = { sub: "alice", role: "admin", apps: ["app_a"] };
    await expectInvalidToken(auth, await hs256(ok, { exp: nowS() - 5 }), /expired/);
    await expectInvalidToken(auth, await hs256(ok, { secret: "another-secret-of-at-least-32-bytes!" }), /signature/);
    await expectInvalidToken(auth, `${b64({ alg: "none", typ: "JWT" })}.${b64({ ...ok, exp: nowS() + 600 })}.`, /alg none/);
    await expectInvalidToken(auth, await hs256(ok, { exp: null }), /"exp"/);
    await expectInvalidToken(auth, await hs256({ role: "admin", apps: ["app_a"] }), /"sub"/);
    await expectInvalidToken(auth, await hs256({ sub: "alice", apps: ["app_a"] }), /no "role" claim/);
    await expectInvalidToken(auth, await hs256({ ...ok, role: "superuser" }), /owner, admin, member/);
    await expectInvalidToken(auth, await hs256({ ...ok, apps: "app_a" }), /"apps"/);
    await expectInvalidToken(auth, await hs256({ ...ok, apps: [1] }), /"apps"/);
    await expectInvalidToken(auth, await hs256({ sub: "alice", role: "admin" }), /"apps"/);
    // A signed token whose header says RS256 is refused when only HS256 is configured.
    const rs = await generateKeyPair("RS256");
    await expectInvalidToken(auth, await new SignJWT(ok).setProtectedHeader({ alg: "RS256" }).setExpirationTime("10m").sign(rs.privateKey), /not accepted/);
  });

  test("without a secret or JWKS configured, a JWT is just an invalid token", async () => {
    const { auth } = await start(openStore(tempDir()));
    await expectInvalidToken(auth, await hs256({ sub: "alice", role: "admin", apps: "*" }), /Invalid management token/);
  });

  test("the issuer and audience are enforced when configured", async () => {
    const { auth } = await start(openStore(tempDir()), { MANAGEMENT_JWT_SECRET: SECRET, MANAGEMENT_JWT_ISSUER: "https://idp.example", MANAGEMENT_JWT_AUDIENCE: "agentry-mgmt" });
    const ok = { sub: "alice", role: "owner", apps: "*" };
    expect(await auth.authenticate(request(await hs256({ ...ok, iss: "https://idp.example", aud: "agentry-mgmt" })))).toMatchObject({ subject: "alice" });
    expect(await auth.authenticate(request(await hs256({ ...ok, iss: "https://idp.example", aud: ["other", "agentry-mgmt"] })))).toMatchObject({ subject: "alice" });
    await expectInvalidToken(auth, await hs256({ ...ok, aud: "agentry-mgmt" }), /issuer/);
    await expectInvalidToken(auth, await hs256({ ...ok, iss: "https://evil.example", aud: "agentry-mgmt" }), /issuer/);
    await expectInvalidToken(auth, await hs256({ ...ok, iss: "https://idp.example" }), /audience/);
    await expectInvalidToken(auth, await hs256({ ...ok, iss: "https://idp.example", aud: "other" }), /audience/);
  });

  test("a verified token is cached: the same principal comes back, and it is refused once past its exp", async () => {
    let now = Date.now();
    const { auth } = await start(openStore(tempDir()), { MANAGEMENT_JWT_SECRET: SECRET }, () => now);
    const exp = Math.floor(now / 1000) + 60;
    const token = await hs256({ sub: "alice", role: "admin", apps: ["app_a"] }, { exp });
    const first = await auth.authenticate(request(token));
    expect(await auth.authenticate(request(token))).toBe(first);
    now = exp * 1000 - 1;
    expect(await auth.authenticate(request(token))).toBe(first);
    now = exp * 1000;
    await expectInvalidToken(auth, token, /expired/);
    await expectInvalidToken(auth, token, /expired/); // and again, now that it left the cache
  });
});

/** A JWKS server on 127.0.0.1 serving the given public keys; counts its fetches. */
function jwksServer(keys: JWK[]) {
  let fetches = 0;
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      if (new URL(req.url).pathname !== "/.well-known/jwks.json") return new Response("not found", { status: 404 });
      fetches++;
      return Response.json({ keys });
    },
  });
  cleanups.push(() => server.stop(true));
  return { url: `http://127.0.0.1:${server.port}/.well-known/jwks.json`, fetches: () => fetches, server };
}

async function keyPair(alg: "RS256" | "ES256", kid: string) {
  const { publicKey, privateKey } = await generateKeyPair(alg);
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  const sign = (claims: Record<string, unknown>, exp: number = nowS() + 600) =>
    new SignJWT(claims).setProtectedHeader({ alg, kid }).setExpirationTime(exp).sign(privateKey);
  return { jwk, sign };
}

describe("JWTs against a JWKS URL", () => {
  test("RS256 and ES256 tokens signed by the provider's keys are accepted; others are refused", async () => {
    const rsa = await keyPair("RS256", "rsa-1");
    const ec = await keyPair("ES256", "ec-1");
    const jwks = jwksServer([rsa.jwk, ec.jwk]);
    const { auth } = await start(openStore(tempDir()), { MANAGEMENT_JWKS_URL: jwks.url, MANAGEMENT_JWT_ISSUER: "https://idp.example" });
    const claims = { sub: "carol", role: "member", apps: ["app_c"], iss: "https://idp.example" };
    expect(await auth.authenticate(request(await rsa.sign(claims)))).toEqual({ kind: "jwt", subject: "carol", role: "member", apps: ["app_c"] });
    expect(await auth.authenticate(request(await ec.sign({ ...claims, role: "owner" })))).toMatchObject({ role: "owner" });
    expect(jwks.fetches()).toBeGreaterThanOrEqual(1);

    // The same kid, another private key: the signature does not verify.
    const impostor = await keyPair("RS256", "rsa-1");
    await expectInvalidToken(auth, await impostor.sign(claims), /signature/);
    // An unknown kid: no key matches.
    const stranger = await keyPair("ES256", "ec-unknown");
    await expectInvalidToken(auth, await stranger.sign(claims), /No key/);
    // The issuer applies here too, and so do the claim rules.
    await expectInvalidToken(auth, await rsa.sign({ ...claims, iss: "https://other.example" }), /issuer/);
    await expectInvalidToken(auth, await rsa.sign({ ...claims, role: "root" }), /owner, admin, member/);
    await expectInvalidToken(auth, await rsa.sign(claims, nowS() - 10), /expired/);
    // HS256 is not accepted when only a JWKS is configured (no secret to check it with).
    await expectInvalidToken(auth, await hs256(claims), /not accepted/);
  });

  test("an unreachable JWKS is 503 unavailable, not 401", async () => {
    const rsa = await keyPair("RS256", "rsa-1");
    const jwks = jwksServer([rsa.jwk]);
    const url = jwks.url;
    jwks.server.stop(true);
    const { auth, logs } = await start(openStore(tempDir()), { MANAGEMENT_JWKS_URL: url });
    const token = await rsa.sign({ sub: "carol", role: "member", apps: "*" });
    const err = await refusal(auth, token);
    expect({ status: err.status, code: err.code }).toEqual({ status: 503, code: "unavailable" });
    expect(logs.join("\n")).not.toContain(token);
  });
});

describe("configuration", () => {
  const expectConfigError = (env: Record<string, string>, variable: string, secret: string) => {
    let error: unknown;
    try {
      loadConfig(env);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variable).toBe(variable);
    expect((error as ConfigError).message).not.toContain(secret);
  };

  test("the management variables are read and checked, never echoed", () => {
    const config = loadConfig({ ADMIN_TOKEN: ADMIN, MANAGEMENT_JWT_SECRET: SECRET, MANAGEMENT_JWKS_URL: "http://127.0.0.1:9/jwks", MANAGEMENT_JWT_ISSUER: "iss", MANAGEMENT_JWT_AUDIENCE: "aud" });
    expect(config.management).toEqual({ adminToken: ADMIN, jwtSecret: SECRET, jwksUrl: "http://127.0.0.1:9/jwks", jwtIssuer: "iss", jwtAudience: "aud" });
    expect(loadConfig({}).management).toEqual({ adminToken: undefined, jwtSecret: undefined, jwksUrl: undefined, jwtIssuer: undefined, jwtAudience: undefined });
    expectConfigError({ MANAGEMENT_JWT_SECRET: "short-secret-31-bytes-long-xxxx" }, "MANAGEMENT_JWT_SECRET", "short-secret-31-bytes-long-xxxx");
    expectConfigError({ ADMIN_TOKEN: "tooshort-token" }, "ADMIN_TOKEN", "tooshort-token");
    expectConfigError({ MANAGEMENT_JWKS_URL: "ftp://secret-host/jwks" }, "MANAGEMENT_JWKS_URL", "secret-host");
    expect("short-secret-31-bytes-long-xxxx").toHaveLength(31);
  });
});
