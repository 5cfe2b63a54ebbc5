/**
 * Model providers built from apps' connections (`/v1/apps/{id}/connections/{name}`): each app's agents
 * run on the provider and key the app configured, one server serving many apps on different providers
 * at once. A connection's key is sealed in the secret box and opened only to build its client; clients
 * are kept until the connection changes. End users' credentials (BYOS) build their clients here too
 * (`providerWithKey`), kept the same way, under the user, until the credential changes. At most KEPT
 * clients are kept, the least recently used dropped first.
 */
import type { Connection } from "../domain/app/app.ts";
import type { SecretBox } from "../secrets/secretBox.ts";
import { openConnectionHeaders } from "./connectionHeaders.ts";
import { AnthropicProvider } from "./anthropic.ts";
import { OpenAiProvider } from "./openai.ts";
import { LlmError, type LlmProvider } from "./provider.ts";
import { ResilientProvider, type ResilienceOptions } from "./resilient.ts";

const KEPT = 1_000;

/** What a provider is built for: an app's connection, or the server's own provider seen as one. */
export type ProviderTarget = Pick<Connection, "name" | "provider" | "base_url" | "default_model" | "headers">;

/** The server's own provider (`LLM_*`), the target of end users' credentials for agents without a connection. */
export interface ServerModel {
  provider: "sandbox" | "openai" | "anthropic";
  baseUrl?: string | undefined;
  model?: string | undefined;
}

/** The key a provider is built with: opened only when a client is (re)built. */
export interface ProviderKey {
  /** Changes whenever the key does (its sealed form): a new one rebuilds the client. Never the key itself. */
  fingerprint: string;
  open(): Promise<string>;
  /** An OAuth access token rather than an API key: Anthropic takes it as a bearer token, not as x-api-key. */
  oauth?: boolean;
}

export class ConnectionProviders {
  private readonly built = new Map<string, { fingerprint: string; provider: LlmProvider }>();

  constructor(private readonly secrets: SecretBox, private readonly resilience: ResilienceOptions, private readonly server: ServerModel = { provider: "sandbox" }) {}

  /** The provider for `connection` of `appId` (built on first use, and again when it changed). */
  async providerFor(appId: string, connection: Connection): Promise<LlmProvider> {
    const key: ProviderKey = {
      fingerprint: connection.api_key ?? "",
      // A keyless OpenAI-compatible endpoint still needs a non-empty key for the SDK.
      open: async () => (connection.api_key ? this.secrets.open(appId, connection.api_key) : "unused"),
    };
    return this.provider(`${appId}/${connection.name}`, appId, connection, key, (p) => namedFailures(p, connection.name));
  }

  /**
   * The server's provider as a target for an end user's own credential, when it is `kind`: its base URL
   * and default model, never its key. Null when the server runs another kind (or only the sandbox).
   */
  serverTarget(kind: string): ProviderTarget | null {
    if (kind !== this.server.provider || kind === "sandbox") return null;
    return { name: "(server)", provider: this.server.provider as "openai" | "anthropic", base_url: this.server.baseUrl ?? null, default_model: this.server.model ?? null };
  }

  /**
   * The provider for `target` called with `key` instead of the target's own (an end user's credential,
   * BYOS). `id` names what it is kept under (the app, the user, the target); it is rebuilt when the key
   * or the target changes. `headersApp` is the app the target's header values are sealed for.
   */
  async providerWithKey(id: string, headersApp: string, target: ProviderTarget, key: ProviderKey): Promise<LlmProvider> {
    return this.provider(id, headersApp, target, key, (p) => p);
  }

  private async provider(id: string, headersApp: string, target: ProviderTarget, key: ProviderKey, wrap: (p: LlmProvider) => LlmProvider): Promise<LlmProvider> {
    const fingerprint = JSON.stringify([target, key.fingerprint]);
    const hit = this.built.get(id);
    if (hit && hit.fingerprint === fingerprint) {
      // Most recently used last: the least recently used is the one dropped when the cache is full.
      this.built.delete(id);
      this.built.set(id, hit);
      return hit.provider;
    }
    const headers = await openConnectionHeaders(this.secrets, headersApp, target.headers);
    const secret = await key.open();
    const options = {
      apiKey: secret, ...(target.base_url ? { baseURL: target.base_url } : {}), ...(target.default_model ? { defaultModel: target.default_model } : {}),
      ...(Object.keys(headers).length ? { headers } : {}),
    };
    // OpenAI sends either kind as a bearer token; Anthropic has a separate header for each.
    // Named by the connection's kind: usage events and price keys (`openai_compatible/<model>`) say which.
    const inner = target.provider === "anthropic"
      ? new AnthropicProvider({ ...options, ...(key.oauth ? { authToken: secret } : {}) })
      : new OpenAiProvider({ ...options, name: target.provider });
    const provider = wrap(new ResilientProvider(inner, this.resilience));
    this.built.delete(id);
    this.built.set(id, { fingerprint, provider });
    if (this.built.size > KEPT) this.built.delete(this.built.keys().next().value!);
    return provider;
  }
}

/**
 * A connection's refused credentials are the app's to fix: the failure names the connection (never
 * its key) so the job's error says which one.
 */
function namedFailures(inner: LlmProvider, connection: string): LlmProvider {
  return {
    name: inner.name,
    defaultModel: inner.defaultModel,
    async *stream(request) {
      try {
        yield* inner.stream(request);
      } catch (err) {
        if (err instanceof LlmError && err.code === "provider_auth_failed") {
          throw new LlmError("provider_auth_failed", `The model connection "${connection}" was refused by ${inner.name}: ${err.message}`, false, undefined, err.providerRequestId);
        }
        throw err;
      }
    },
  };
}

