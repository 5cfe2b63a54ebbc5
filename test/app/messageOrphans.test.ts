/**
 * A request retried under its Idempotency-Key after a 5xx takes over the earlier execution's ids; when
 * the retry is refused before it stores anything (the session became busy), the files the earlier
 * execution stored for the message go, since the refusal frees the key and no message names them.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { resolveAttachments, inlineFileId } from "../../src/app/messageFiles.ts";
import { loadFile } from "../../src/app/files.ts";
import { acceptMessage } from "../../src/http/routes/v1/sessions/service.ts";
import { getSession } from "../../projections/sessions/index.ts";
import { newResourceId } from "../../src/core/ids.ts";
import { api, TEST_KEY } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY, SANDBOX_CHUNK_DELAY_MS: "5" });
});
afterAll(async () => {
  await server?.stop();
});

test("a retry refused before storing anything removes what the earlier execution stored under the message id", async () => {
  const client = api(server.url);
  const sid = (await client.post("/v1/sessions", { user_id: "u-orphans" })).body.id;
  await server.ctx.projections.waitUntilCaughtUp();
  const session = getSession(server.ctx.db, server.ctx.appId, sid)!;
  const ids = { message_id: newResourceId("msg"), job_id: newResourceId("job") };
  const attachments = [{ type: "file" as const, name: "note.txt", content_type: "text/plain", data: Buffer.from("stored by the first try").toString("base64") }];
  // The earlier execution: its inline file stored, then a crash (a 5xx) before the message was recorded.
  await resolveAttachments(server.ctx, session, attachments, ids.message_id, { appId: server.ctx.appId }, []);
  const fileId = inlineFileId(ids.message_id, 0);
  expect((await loadFile(server.ctx, fileId))?.state.status).toBe("uploaded");
  // Meanwhile the session became busy with another turn.
  const busy = await client.post(`/v1/sessions/${sid}/messages`, { content: "[slow] a long turn" });
  expect(busy.status).toBe(202);
  const request = new Request(`${server.url}/v1/sessions/${sid}/messages`, { method: "POST", headers: { "idempotency-key": "orphan-key-1" } });
  const input = { content: "the retried message", attachments, model: null, context: null, multitask: "reject" as const };
  const refused = await acceptMessage(server.ctx, request, session, input as never, ids, true).then(() => null, (err) => err);
  expect(refused?.code).toBe("session_busy");
  expect((await loadFile(server.ctx, fileId))?.state.status).toBe("removed");
});
