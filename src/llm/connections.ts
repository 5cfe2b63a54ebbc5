/**
 * Model providers built from apps' connections (`/v1/apps/{id}/connections/{name}`): each app's agents
 * run on the provider and key the app configured, one server serving many apps on different providers
 * at once. A connection's key is sealed in the secret box and opened only to build its client; clients
 * are kept until the connection changes.
 */
import type { Connection } from "../domain/app/app.ts";
import type { SecretBox } from "../secrets/secretBox.ts";
import { AnthropicProvider } from "./anthropic.ts";
import { OpenAiProvider } from "./openai.ts";
import { LlmError, type LlmProvider } from "./provider.ts";
import { ResilientProvider, type ResilienceOptions } from "./resilient.ts";

const KEPT = 1_000;

export class ConnectionProviders {
  private readonly built = new Map<string, { connection: string; provider: LlmProvider }>();

  constructor(private readonly secrets: SecretBox, private readonly resilience: ResilienceOptions) {}

  /** The provider for `connection` of `appId` (built on first use, and again when it changed). */
  async providerFor(appId: string, connection: Connection): Promise<LlmProvider> {
    const id = `${appId}/${connection.name}`;
    const fingerprint = JSON.stringify(connection);
    const hit = this.built.get(id);
    if (hit && hit.connection === fingerprint) return hit.provider;
    // A keyless OpenAI-compatible endpoint still needs a non-empty key for the SDK.
    const apiKey = connection.api_key ? await this.secrets.open(appId, connection.api_key) : "unused";
    const options = { apiKey, ...(connection.base_url ? { baseURL: connection.base_url } : {}), ...(connection.default_model ? { defaultModel: connection.default_model } : {}) };
    const inner = connection.provider === "anthropic" ? new AnthropicProvider(options) : new OpenAiProvider(options);
    const provider = namedFailures(new ResilientProvider(inner, this.resilience), connection.name);
    this.built.delete(id);
    this.built.set(id, { connection: fingerprint, provider });
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

