/**
 * API-key authentication for `/v1`. Until tenancy lands there is one default app whose key comes from
 * `API_KEY`, or is generated once into the data folder and printed at start. Keys are compared by
 * SHA-256 digest in constant time.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { preparePrivateDir } from "../core/privateFiles.ts";
import { join } from "node:path";
import { timingSafeEqual } from "node:crypto";
import { UnauthorizedError } from "../core/errors.ts";

const digest = (value: string): Buffer => Buffer.from(new Bun.CryptoHasher("sha256").update(value).digest());

export interface ApiKeySource {
  key: string;
  /** Where it came from: "env", "file" or "generated" (new this start). */
  origin: "env" | "file" | "generated";
}

/** The default app's key: `API_KEY`, else `DATA_DIR/api_key`, else a new one written there (mode 0600). */
export function resolveApiKey(envKey: string | undefined, dataDir: string | null): ApiKeySource {
  if (envKey) return { key: envKey, origin: "env" };
  if (!dataDir) return { key: generateKey(), origin: "generated" };
  const path = join(dataDir, "api_key");
  if (existsSync(path)) return { key: readFileSync(path, "utf8").trim(), origin: "file" };
  preparePrivateDir(dataDir);
  const key = generateKey();
  writeFileSync(path, key + "\n", { mode: 0o600 });
  return { key, origin: "generated" };
}

const generateKey = () => `agk_${Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString("base64url")}`;

/** Reads the key from `X-API-Key` or `Authorization: Bearer`. */
export function presentedKey(headers: Headers): string | null {
  const header = headers.get("x-api-key");
  if (header) return header.trim();
  const auth = headers.get("authorization");
  if (auth && /^bearer\s+/i.test(auth)) return auth.replace(/^bearer\s+/i, "").trim();
  return null;
}

/**
 * Checks a request's key against the app's; throws 401 when it is missing or wrong. The request guard
 * (requestGuard.ts) runs it before anything else, so no body is read and no input validated first.
 */
export function apiKeyAuthenticator(expected: string): (request: Request) => void {
  const want = digest(expected);
  return (request) => {
    const key = presentedKey(request.headers);
    if (!key) throw new UnauthorizedError("Missing API key: send X-API-Key or Authorization: Bearer");
    if (!timingSafeEqual(digest(key), want)) throw new UnauthorizedError("Invalid API key");
  };
}
