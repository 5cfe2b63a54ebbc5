/**
 * Embeddings for memory's hybrid ranking: an app's model connection with an `embeddings_model` is
 * called at its `/embeddings` endpoint (OpenAI wire format, through the `openai` SDK) with the
 * connection's own key and headers. Vectors come back normalised to unit length, so cosine
 * similarity is a dot product.
 *
 * Which connection: the app's connections that set `embeddings_model`, the first by name. Test data
 * never reaches a real model: a test partition has no embeddings (its memory ranks by BM25 alone).
 */
import OpenAI from "openai";
import { baseAppId, isTestData } from "../app/access.ts";
import type { Connection } from "../domain/app/app.ts";
import type { SecretBox } from "../secrets/secretBox.ts";
import { openConnectionHeaders } from "./connectionHeaders.ts";

/** At most this many texts per request. */
export const EMBED_BATCH = 64;
/** Longer texts are cut before they are sent (memory entries are at most 8,000 characters). */
const MAX_INPUT_CHARS = 8_000;
const MAX_DIMS = 16_384;

export class EmbeddingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EmbeddingError";
  }
}

export interface Embedder {
  /** Names the model (and endpoint) the vectors were made with: vectors of another key are not compared. */
  readonly modelKey: string;
  /** The connection it calls (for logs). */
  readonly connection: string;
  embed(texts: readonly string[], signal?: AbortSignal): Promise<Float32Array[]>;
}

/** The connection an app's memory embeds with: the first by name that sets `embeddings_model`. */
export function embeddingConnection(connections: Readonly<Record<string, Connection>>): Connection | null {
  const names = Object.keys(connections).filter((n) => Object.hasOwn(connections, n)).sort();
  for (const name of names) {
    const c = connections[name]!;
    if (c.embeddings_model && c.provider !== "anthropic") return c;
  }
  return null;
}

export const modelKeyOf = (c: Connection): string =>
  `${c.embeddings_model}#${(Bun.SHA256.hash(JSON.stringify([c.provider, c.base_url, c.embeddings_model]), "hex") as string).slice(0, 12)}`;

/** Embedders per app, built from its connection when first needed and again when it changed. */
export class AppEmbeddings {
  private readonly built = new Map<string, { fingerprint: string; embedder: Embedder }>();

  constructor(private readonly secrets: SecretBox, private readonly connectionsOf: (appId: string) => Promise<Readonly<Record<string, Connection>>>) {}

  /** The embedder of a data partition's app; null when it has none (or for test data). */
  async forPartition(dataApp: string): Promise<Embedder | null> {
    if (isTestData(dataApp)) return null;
    const app = baseAppId(dataApp);
    const connection = embeddingConnection(await this.connectionsOf(app));
    if (!connection) return null;
    const fingerprint = JSON.stringify(connection);
    const hit = this.built.get(app);
    if (hit && hit.fingerprint === fingerprint) return hit.embedder;
    const apiKey = connection.api_key ? await this.secrets.open(app, connection.api_key) : "unused";
    const headers = await openConnectionHeaders(this.secrets, app, connection.headers);
    const client = new OpenAI({
      apiKey, maxRetries: 1, timeout: 15_000, ...(connection.base_url ? { baseURL: connection.base_url } : {}),
      ...(Object.keys(headers).length ? { defaultHeaders: headers } : {}),
    });
    const embedder = openAiEmbedder(client, connection.embeddings_model!, modelKeyOf(connection), connection.name);
    this.built.set(app, { fingerprint, embedder });
    if (this.built.size > 1000) this.built.delete(this.built.keys().next().value!);
    return embedder;
  }
}

function openAiEmbedder(client: OpenAI, model: string, modelKey: string, connection: string): Embedder {
  return {
    modelKey,
    connection,
    async embed(texts, signal) {
      const out: Float32Array[] = [];
      for (let i = 0; i < texts.length; i += EMBED_BATCH) {
        const input = texts.slice(i, i + EMBED_BATCH).map((t) => t.slice(0, MAX_INPUT_CHARS));
        let response: OpenAI.CreateEmbeddingResponse;
        try {
          response = await client.embeddings.create({ model, input, encoding_format: "float" }, signal ? { signal } : {});
        } catch (err) {
          // The SDK's message may quote the upstream body; only its status is kept.
          const status = (err as { status?: number }).status;
          throw new EmbeddingError(`The embeddings endpoint of connection "${connection}" failed${status ? ` (HTTP ${status})` : ""}`);
        }
        out.push(...vectorsOf(response, input.length));
      }
      return out;
    },
  };
}

/** The response's vectors in input order, checked and normalised. */
function vectorsOf(response: OpenAI.CreateEmbeddingResponse, count: number): Float32Array[] {
  const data = Array.isArray(response?.data) ? response.data : [];
  if (data.length !== count) throw new EmbeddingError(`The embeddings endpoint answered ${data.length} vectors for ${count} inputs`);
  const byIndex = [...data].sort((a, b) => a.index - b.index);
  let dims = -1;
  return byIndex.map((d) => {
    const values = d.embedding as unknown;
    if (!Array.isArray(values) || values.length === 0 || values.length > MAX_DIMS || values.some((v) => typeof v !== "number" || !Number.isFinite(v))) {
      throw new EmbeddingError("The embeddings endpoint answered something that is not a vector");
    }
    if (dims !== -1 && values.length !== dims) throw new EmbeddingError("The embeddings endpoint answered vectors of different sizes");
    dims = values.length;
    return normalised(values as number[]);
  });
}

function normalised(values: number[]): Float32Array {
  let norm = 0;
  for (const v of values) norm += v * v;
  norm = Math.sqrt(norm);
  const out = new Float32Array(values.length);
  if (norm === 0) return out;
  for (let i = 0; i < values.length; i++) out[i] = values[i]! / norm;
  return out;
}

/** Cosine similarity of two unit vectors (0 when their sizes differ). */
export function cosine(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += a[i]! * b[i]!;
  return dot;
}
