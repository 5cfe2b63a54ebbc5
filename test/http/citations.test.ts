/** A reply cites the message's files the model read (`file_id` citations), beside recalled memory. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
let client: Api;

beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY, SANDBOX_CHUNK_DELAY_MS: "0" });
  client = api(server.url);
});
afterAll(async () => {
  await server?.stop();
});

test("files the model read are cited with a snippet of what it was shown", async () => {
  const sid = (await client.post("/v1/sessions", { user_id: "u-cite" })).body.id;
  const form = new FormData();
  form.set("file", new File(["Quarterly revenue rose 12% to 4.2 million."], "report.txt", { type: "text/plain" }));
  const uploaded = (await (await fetch(`${server.url}/v1/sessions/${sid}/files`, { method: "POST", headers: { "x-api-key": TEST_KEY }, body: form })).json()) as any;
  const turn = await client.post(`/v1/sessions/${sid}/messages`, {
    content: "What does the report say?", wait: true,
    attachments: [{ type: "file", file_id: uploaded.id }],
  });
  expect({ status: turn.status, body: turn.body.status ?? turn.body }).toEqual({ status: 200, body: "completed" });
  expect(turn.body.reply.citations).toEqual([{ file_id: uploaded.id, snippet: "Quarterly revenue rose 12% to 4.2 million." }]);
  expect((await client.get(`/v1/jobs/${turn.body.job_id}`)).body.citations).toEqual(turn.body.reply.citations);
  // A message without files cites nothing.
  const plain = await client.post(`/v1/sessions/${sid}/messages`, { content: "thanks", wait: true });
  expect(plain.body.reply.citations ?? []).toEqual([]);
});
