/**
 * Console logins, in this process's memory: a random id (the cookie's value) for the management
 * principal that logged in, until an absolute expiry (capped by a JWT's own `exp`) or an idle timeout.
 * The token itself is not kept: the console acts with the principal it gave (see inProcessApi.ts).
 * A restart logs everyone out, which is acceptable for an operators' console.
 */
import type { ManagementPrincipal } from "../auth/management.ts";

export interface Login {
  principal: ManagementPrincipal;
  /** A random value the login's pages put in every form, and every action must send back (CSRF). */
  csrf: string;
  expiresAt: number;
  lastSeenAt: number;
}

export interface ConsoleLoginOptions {
  /** How long a login lasts at most. */
  ttlMs?: number;
  /** How long a login lasts without a request. */
  idleMs?: number;
  /** The most logins kept; past it the oldest is dropped. */
  maxLogins?: number;
  now?: () => number;
}

export class ConsoleLogins {
  private readonly logins = new Map<string, Login>();
  readonly ttlMs: number;
  private readonly idleMs: number;
  private readonly maxLogins: number;
  private readonly now: () => number;

  constructor(options: ConsoleLoginOptions = {}) {
    this.ttlMs = options.ttlMs ?? 8 * 3_600_000;
    this.idleMs = options.idleMs ?? 3_600_000;
    this.maxLogins = options.maxLogins ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  /** A new login for `principal`, ending at `notAfter` (a JWT's expiry) if sooner than the usual lifetime. */
  create(principal: ManagementPrincipal, notAfter?: number): { id: string; expiresAt: number } {
    const now = this.now();
    this.sweep(now);
    while (this.logins.size >= this.maxLogins) this.logins.delete(this.logins.keys().next().value!);
    const id = randomId();
    const expiresAt = Math.min(now + this.ttlMs, notAfter ?? Infinity);
    this.logins.set(id, { principal, csrf: randomId(), expiresAt, lastSeenAt: now });
    return { id, expiresAt };
  }

  /** The login while it is valid (noting the use); null once expired, idle too long or unknown. */
  use(id: string | null): Login | null {
    if (id === null) return null;
    const login = this.logins.get(id);
    if (!login) return null;
    const now = this.now();
    if (now >= login.expiresAt || now - login.lastSeenAt >= this.idleMs) {
      this.logins.delete(id);
      return null;
    }
    login.lastSeenAt = now;
    return login;
  }

  end(id: string | null): void {
    if (id !== null) this.logins.delete(id);
  }

  get size(): number {
    return this.logins.size;
  }

  private sweep(now: number): void {
    for (const [id, login] of this.logins) if (now >= login.expiresAt || now - login.lastSeenAt >= this.idleMs) this.logins.delete(id);
  }
}

const randomId = () => Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");
