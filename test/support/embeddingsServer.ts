/**
 * A local server speaking the OpenAI embeddings wire format (`POST /v1/embeddings`), for tests of
 * memory's hybrid ranking. Its vectors are made from a small table of concepts, so texts that share no
 * word but mean related things (pizza, dinner, vegetarian) point the same way: each word of a concept
 * adds to that concept's dimension, any other word a little to a last "other" dimension.
 */
const CONCEPTS: Record<string, string[]> = {
  food: ["food", "eat", "eats", "meal", "meals", "dinner", "lunch", "pizza", "pasta", "vegetarian", "vegan", "cook", "cooking", "recipe", "hungry"],
  colour: ["colour", "color", "blue", "red", "green", "yellow", "paint"],
  travel: ["travel", "trip", "flight", "flights", "hotel", "holiday", "airport", "train", "trains"],
  pets: ["pet", "pets", "cat", "cats", "dog", "dogs", "kitten", "puppy"],
};
const DIMENSIONS = [...Object.keys(CONCEPTS), "other"];

export function conceptVector(text: string): number[] {
  const v = new Array(DIMENSIONS.length).fill(0);
  for (const word of text.toLowerCase().match(/[a-z]+/g) ?? []) {
    const concept = Object.entries(CONCEPTS).find(([, words]) => words.includes(word))?.[0];
    v[concept ? DIMENSIONS.indexOf(concept) : DIMENSIONS.length - 1] += concept ? 1 : 0.05;
  }
  return v;
}

export interface EmbeddingsServer {
  baseURL: string;
  requests: Array<{ headers: Headers; body: any }>;
  /** Answers the next `n` requests with HTTP `status`. */
  fail(n: number, status?: number): void;
  stop(): void;
}

export function startEmbeddingsServer(): EmbeddingsServer {
  const requests: EmbeddingsServer["requests"] = [];
  let failures = 0;
  let failStatus = 500;
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      const url = new URL(req.url);
      const body = (await req.json().catch(() => null)) as any;
      requests.push({ headers: new Headers(req.headers), body });
      if (req.method !== "POST" || url.pathname !== "/v1/embeddings") return Response.json({ error: { message: "not found" } }, { status: 404 });
      if (failures > 0) {
        failures--;
        return Response.json({ error: { message: "upstream exploded with secret detail", type: "server_error" } }, { status: failStatus });
      }
      const inputs: string[] = typeof body?.input === "string" ? [body.input] : body?.input ?? [];
      const data = inputs.map((text, index) => {
        const vector = conceptVector(text);
        const embedding = body?.encoding_format === "base64" ? Buffer.from(new Float32Array(vector).buffer).toString("base64") : vector;
        return { object: "embedding", index, embedding };
      });
      return Response.json({ object: "list", data, model: body?.model ?? "m", usage: { prompt_tokens: inputs.length, total_tokens: inputs.length } });
    },
  });
  return {
    baseURL: `http://127.0.0.1:${server.port}/v1`,
    requests,
    fail(n, status = 500) {
      failures = n;
      failStatus = status;
    },
    stop: () => server.stop(true),
  };
}
