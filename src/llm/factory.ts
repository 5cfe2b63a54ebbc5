/** Builds the model providers this server offers: the sandbox always, plus the configured one. */
import type { Config } from "../config.ts";
import { AnthropicProvider } from "./anthropic.ts";
import { OpenAiProvider } from "./openai.ts";
import type { LlmProvider } from "./provider.ts";
import { ResilientProvider } from "./resilient.ts";
import { SandboxProvider } from "./sandbox.ts";

export function createProviders(config: Config): { providers: Map<string, LlmProvider>; defaultProvider: string } {
  const providers = new Map<string, LlmProvider>([["sandbox", new SandboxProvider({ chunkDelayMs: config.sandboxChunkDelayMs })]]);
  const { llm } = config;
  const resilience = { stallTimeoutMs: llm.stallTimeoutMs, maxAttempts: llm.maxAttempts };
  if (llm.provider === "openai") {
    providers.set("openai", new ResilientProvider(new OpenAiProvider({
      // A keyless OpenAI-compatible endpoint (a local vLLM or Ollama) still needs a non-empty key for the SDK.
      apiKey: llm.apiKey ?? "unused", baseURL: llm.baseUrl, ...(llm.model ? { defaultModel: llm.model } : {}),
    }), resilience));
  } else if (llm.provider === "anthropic") {
    providers.set("anthropic", new ResilientProvider(new AnthropicProvider({
      apiKey: llm.apiKey ?? "unused", baseURL: llm.baseUrl, ...(llm.model ? { defaultModel: llm.model } : {}),
    }), resilience));
  }
  return { providers, defaultProvider: llm.provider };
}
