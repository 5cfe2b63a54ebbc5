/**
 * Files reach the model: a text file, an image and a PDF's text, within the file budget (an
 * over-budget file cut, the cut marked), through the sandbox (which echoes what it received) and
 * through the real OpenAI and Anthropic clients against local wire-format servers, whose recorded
 * request bodies are checked. Inline base64 attachments become files: the stored event holds no bytes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { startAnthropicWireServer, startOpenAiWireServer, type WireServer } from "../support/llmWireServers.ts";
import { makePdf, PNG_1X1 } from "../support/pdf.ts";
import { sessionStream } from "../../src/domain/streams.ts";

const TEXT = "The launch code is PAPAYA-7. Keep it quiet.\n";
const ROOT = "root-token-for-file-content-0123456789";
const b64 = (bytes: Uint8Array | string) => Buffer.from(bytes).toString("base64");

async function uploadTo(server: TestServer, session: string, content: Uint8Array | string, name: string, type: string) {
  const form = new FormData();
  form.append("file", new Blob([content], { type }), name);
  const res = await fetch(`${server.url}/v1/sessions/${session}/files`, { method: "POST", headers: { "x-api-key": TEST_KEY }, body: form });
  expect(res.status).toBe(201);
  return (await res.json()) as { id: string };
}

describe("with the sandbox provider", () => {
  let server: TestServer;
  let client: Api;
  beforeAll(async () => {
    server = await startTestServer({ API_KEY: TEST_KEY, SANDBOX_CHUNK_DELAY_MS: "0", FILE_MODEL_BUDGET_CHARS: "300", ADMIN_TOKEN: ROOT });
    client = api(server.url);
    // A skill without an output schema, so the sandbox's reply says which files it received.
    expect((await client.post("/v1/skills", { name: "read-files", description: "Reads the attached files", steps: "Read the attached files." })).status).toBe(201);
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("an uploaded text file and a PDF's text reach the model; the sandbox says what it received", async () => {
    const session = (await client.post("/v1/sessions", { user_id: "u-read" })).body.id;
    const text = await uploadTo(server, session, TEXT, "secret.txt", "text/plain");
    const pdf = await uploadTo(server, session, makePdf("The secret ingredient is cardamom."), "recipe.pdf", "application/pdf");
    const r = await client.post(`/v1/sessions/${session}/messages`, {
      content: "What do these files say?", wait: true,
      attachments: [{ type: "file", file_id: text.id }, { type: "file", file_id: pdf.id }],
    });
    expect(r.status).toBe(200);
    const reply = r.body.reply.content as string;
    expect(reply).toContain("Files received:");
    expect(reply).toContain(`- secret.txt (text/plain, text, ${TEXT.length} characters): «The launch code is PAPAYA-7. Keep it quiet. »`);
    expect(reply).toContain("- recipe.pdf (application/pdf, text,");
    expect(reply).toContain("The secret ingredient is cardamom.");
  });

  test("a file over the budget is cut, and the cut is marked", async () => {
    const session = (await client.post("/v1/sessions", { user_id: "u-read" })).body.id;
    const long = "A".repeat(250) + "B".repeat(250);
    const f1 = await uploadTo(server, session, long, "long.txt", "text/plain");
    const f2 = await uploadTo(server, session, "after the budget", "late.txt", "text/plain");
    const r = await client.post(`/v1/sessions/${session}/messages`, { content: "Read", wait: true, attachments: [{ type: "file", file_id: f1.id }, { type: "file", file_id: f2.id }] });
    const reply = r.body.reply.content as string;
    expect(reply).toMatch(/- long\.txt \(text\/plain, text, \d+ characters, cut\): «A{120}»/);
    // Nothing of the second file fits: it is said so, and not cited; the first is cited with what was shown.
    expect(reply).toMatch(/- late\.txt \(text\/plain, text, \d+ characters\): «\[late\.txt is not shown: the files before it used the whole file budget\]»/);
    expect(r.body.reply.citations.map((c: any) => c.file_id)).toEqual([f1.id]);
  });

  test("an inline base64 attachment becomes a file; the stored event names it and holds no bytes", async () => {
    const session = (await client.post("/v1/sessions", { user_id: "u-inline" })).body.id;
    const marker = `inline-secret-${crypto.randomUUID()}`;
    const data = b64(`${marker}\nsecond line`);
    const r = await client.post(`/v1/sessions/${session}/messages`, {
      content: "Here is a note", wait: true, attachments: [{ type: "file", name: "note.md", data }],
    });
    expect(r.status).toBe(200);
    expect(r.body.reply.content).toContain(`- note.md (text/markdown, text, ${marker.length + 12} characters): «${marker} second line»`);

    // The session's own events: message.sent names the file, without data.
    const events = (await client.get(`/v1/sessions/${session}/events?since=0`)).body.events;
    const sent = events.find((e: any) => e.type === "message.sent");
    const [att] = sent.payload.attachments;
    expect(att).toMatchObject({ type: "file", name: "note.md", content_type: "text/markdown", size: marker.length + 12 });
    expect(att.file_id).toStartWith("file_");
    expect(att.data).toBeUndefined();
    // No event holds the base64; none but the reply (the sandbox quotes what it read) holds the content.
    for await (const e of server.ctx.store.readAll()) {
      const raw = JSON.stringify(e.data);
      const quoted = ["TextEmitted", "JobCompleted", "TurnEnded"].includes(e.type);
      expect({ type: e.type, holds: raw.includes(data) || (!quoted && raw.includes(marker)) }).toEqual({ type: e.type, holds: false });
    }
    // It is a file of the session, an attachment from the message; its bytes read back.
    const files = (await client.get(`/v1/sessions/${session}/files?role=attachment`)).body.data;
    expect(files).toHaveLength(1);
    expect(files[0]).toMatchObject({ id: att.file_id, source: "message", message_id: r.body.message_id });
    const got = await client.get(`/v1/files/${att.file_id}`);
    expect(await (await fetch(got.body.download_url)).text()).toBe(`${marker}\nsecond line`);
  });

  test("an older message that held its bytes inline still reads, and the model still gets its content", async () => {
    const session = (await client.post("/v1/sessions", { user_id: "u-old" })).body.id;
    // Written as the server wrote messages before files were stored apart: the base64 in the event.
    const { sendMessage } = await import("../../src/app/turns.ts");
    const accepted = await sendMessage(server.ctx, session, {
      content: "old style", attachments: [{ type: "file", name: "old.txt", content_type: "text/plain", data: b64("legacy inline content") }],
      model: null, context: null, multitask: "reject",
    }, { appId: server.ctx.appId });
    const events = await client.pollUntilDone(accepted.job_id);
    const done = events.find((e: any) => e.type === "job.completed");
    expect(done.payload.content).toContain("- old.txt (text/plain, text, 21 characters): «legacy inline content»");
    const history = (await client.get(`/v1/sessions/${session}/messages`)).body.data;
    expect(history[0].attachments[0]).toMatchObject({ name: "old.txt", data: b64("legacy inline content") });
    let found = false;
    for await (const e of server.ctx.store.readStream(sessionStream(session))) if (e.type === "MessageSent") found = true;
    expect(found).toBe(true);
  });

  test("bad attachments are 4xx and store nothing, on a message and on a skill run alike", async () => {
    const session = (await client.post("/v1/sessions", { user_id: "u-bad" })).body.id;
    const other = (await client.post("/v1/sessions", { user_id: "u-other" })).body.id;
    const foreign = await uploadTo(server, other, "not yours", "x.txt", "text/plain");
    const note = { type: "file", name: "ok.txt", data: b64("a good file") };
    const cases: Array<[unknown[], number, string, string?]> = [
      [[{ type: "file", name: "a.txt", data: "not base64!!" }], 400, "invalid_request", "attachments.0.data"],
      [[{ type: "file", name: "a.exe", content_type: "application/x-msdownload", data: b64("MZ") }], 415, "unsupported_media_type"],
      [[{ type: "file", name: "noext", data: b64("?") }], 415, "unsupported_media_type"],
      [[{ type: "file", file_id: "file_nope" }], 404, "file_not_found", "attachments.0.file_id"],
      [[{ type: "file", file_id: foreign.id }], 400, "invalid_request", "attachments.0.file_id"],
      [[{ type: "file", file_id: foreign.id, data: b64("x") }], 400, "invalid_request"],
      [[{ type: "file", file_id: "bad id!" }], 400, "invalid_request"],
      [[{ type: "url", url: "https://example.com/a.png", file_id: foreign.id }], 400, "invalid_request"],
      // Names follow an upload's rules: no path, no control characters.
      [[{ type: "file", name: "../../x.txt", data: b64("x") }], 400, "invalid_request", "attachments.0.name"],
      [[{ type: "file", name: "a\\b.txt", data: b64("x") }], 400, "invalid_request", "attachments.0.name"],
      [[{ type: "file", name: "bell\u0007.txt", data: b64("x") }], 400, "invalid_request", "attachments.0.name"],
      [[{ type: "file", name: "x".repeat(252) + ".txt", data: b64("x") }], 400, "invalid_request", "attachments.0.name"],
      // An image or PDF must be one (its first bytes), whatever it is declared or named as.
      [[{ type: "file", name: "x.png", data: b64("<html><script>1</script></html>") }], 415, "unsupported_media_type", "attachments.0.data"],
      [[{ type: "file", name: "x", content_type: "application/pdf", data: b64("not a pdf") }], 415, "unsupported_media_type", "attachments.0.data"],
      // A good inline file before a bad attachment is not stored either.
      [[note, { type: "file", file_id: "file_nope" }], 404, "file_not_found", "attachments.1.file_id"],
      [[note, { type: "file", name: "b.exe", content_type: "application/x-msdownload", data: b64("MZ") }], 415, "unsupported_media_type"],
    ];
    const routes: Array<[string, Record<string, unknown>]> = [
      ["messages", { content: "x" }],
      ["run-skill", { skill: "read-files", inputs: {} }],
    ];
    for (const [route, base] of routes) {
      for (const [attachments, status, code, param] of cases) {
        const r = await client.post(`/v1/sessions/${session}/${route}`, { ...base, attachments });
        expect({ route, attachments, status: r.status, code: r.body.error?.code }).toEqual({ route, attachments, status, code });
        if (param) expect({ route, attachments, param: r.body.error.details?.param }).toEqual({ route, attachments, param });
      }
    }
    expect((await client.get(`/v1/sessions/${session}/files`)).body.data).toEqual([]);
    expect((await client.get(`/v1/sessions/${session}/messages`)).body.data).toEqual([]);
    // Not even as a removed file: no file was recorded for the session.
    for await (const e of server.ctx.store.readAll()) {
      if (e.type === "FileUploaded") expect((e.data as { session_id: string }).session_id).not.toBe(session);
    }
  });

  test("run-skill's attachments take the message's path: an inline file becomes a file the model reads, the event holds no bytes", async () => {
    const session = (await client.post("/v1/sessions", { user_id: "u-skill-files" })).body.id;
    const marker = `skill-inline-${crypto.randomUUID()}`;
    const data = b64(marker);
    const text = await uploadTo(server, session, TEXT, "secret.txt", "text/plain");
    const r = await client.post(`/v1/sessions/${session}/run-skill`, {
      skill: "read-files", inputs: {}, wait: true, attachments: [{ type: "file", name: "note.md", data }, { type: "file", file_id: text.id }],
    });
    expect(r.status).toBe(200);
    expect(r.body.reply.content).toContain(`- note.md (text/markdown, text, ${marker.length} characters): «${marker}»`);
    expect(r.body.reply.content).toContain("- secret.txt (text/plain, text,");
    const sent = (await client.get(`/v1/sessions/${session}/events?since=0`)).body.events.find((e: any) => e.type === "message.sent");
    expect(sent.payload.attachments[0]).toMatchObject({ type: "file", name: "note.md", content_type: "text/markdown", size: marker.length });
    expect(sent.payload.attachments[0].data).toBeUndefined();
    expect(sent.payload.attachments[1]).toMatchObject({ type: "file", file_id: text.id, name: "secret.txt" });
    for await (const e of server.ctx.store.readAll()) expect({ type: e.type, holds: JSON.stringify(e.data).includes(data) }).toEqual({ type: e.type, holds: false });
    const files = (await client.get(`/v1/sessions/${session}/files?role=attachment`)).body.data;
    expect(files.find((f: any) => f.id === sent.payload.attachments[0].file_id)).toMatchObject({ source: "message", message_id: r.body.message_id });
  });

  test("an older message's inline bytes that are not the image they claim go to the model as a note, not an image", async () => {
    const session = (await client.post("/v1/sessions", { user_id: "u-old-image" })).body.id;
    const { sendMessage } = await import("../../src/app/turns.ts");
    const accepted = await sendMessage(server.ctx, session, {
      content: "old style", model: null, context: null, multitask: "reject",
      attachments: [{ type: "file", name: "page.png", content_type: "image/png", data: b64("<html>not an image</html>") }, { type: "file", name: "pixel.png", content_type: "image/png", data: b64(PNG_1X1) }],
    }, { appId: server.ctx.appId });
    const done = (await client.pollUntilDone(accepted.job_id)).find((e: any) => e.type === "job.completed");
    expect(done.payload.content).toContain("[page.png is not shown: its content is not image/png, whatever its type says]");
    expect(done.payload.content).toContain("- pixel.png (image/png, image,");
  });

  test("the runner reads only files of the job's session and user, whatever the message's event names", async () => {
    const session = (await client.post("/v1/sessions", { user_id: "u-runner" })).body.id;
    const otherUser = (await client.post("/v1/sessions", { user_id: "u-runner-other" })).body.id;
    const sameUser = (await client.post("/v1/sessions", { user_id: "u-runner" })).body.id;
    const theirs = await uploadTo(server, otherUser, "another user's words", "theirs.txt", "text/plain");
    const otherSession = await uploadTo(server, sameUser, "another session's words", "elsewhere.txt", "text/plain");
    const own = await uploadTo(server, session, "my own words", "mine.txt", "text/plain");
    // Recorded as if the API had let them through: the runner still refuses to read them.
    const { sendMessage } = await import("../../src/app/turns.ts");
    const accepted = await sendMessage(server.ctx, session, {
      content: "read", model: null, context: null, multitask: "reject",
      attachments: [theirs.id, otherSession.id, own.id].map((file_id) => ({ type: "file" as const, file_id })),
    }, { appId: server.ctx.appId });
    const done = (await client.pollUntilDone(accepted.job_id)).find((e: any) => e.type === "job.completed");
    const content = done.payload.content as string;
    expect(content).not.toContain("another user's words");
    expect(content).not.toContain("another session's words");
    expect(content).toContain("«my own words»");
    expect(content.match(/is not shown: the file was removed or is not available/g)).toHaveLength(2);
  });
});

describe("refused messages leave no files", () => {
  let server: TestServer;
  let client: Api;
  beforeAll(async () => {
    server = await startTestServer({ API_KEY: TEST_KEY, SANDBOX_CHUNK_DELAY_MS: "0", ADMIN_TOKEN: ROOT });
    client = api(server.url);
  });
  afterAll(async () => {
    await server?.stop();
  });

  /** The files recorded for the session (removed or not), from the events. */
  async function recorded(session: string): Promise<{ uploaded: string[]; removed: string[] }> {
    const uploaded: string[] = [];
    const removed: string[] = [];
    for await (const e of server.ctx.store.readAll()) {
      const d = e.data as { session_id?: string; file_id: string };
      if (e.type === "FileUploaded" && d.session_id === session) uploaded.push(d.file_id);
      if (e.type === "FileRemoved") removed.push(d.file_id);
    }
    return { uploaded, removed: removed.filter((f) => uploaded.includes(f)) };
  }

  const inline = (text: string) => [{ type: "file", name: "n.txt", data: b64(text) }];

  test("a refusal the cheap checks find (unknown skill, bad input, busy) stores nothing, with or without Idempotency-Key", async () => {
    const idle = (await client.post("/v1/sessions", { user_id: "u-refused" })).body.id;
    const busy = (await client.post("/v1/sessions", { user_id: "u-refused" })).body.id;
    // The default agent asks before it registers an asset: the session is busy while the job waits.
    const waiting = await client.post(`/v1/sessions/${busy}/messages`, { content: "Please register https://example.com/busy.png" });
    expect(waiting.status).toBe(202);
    await client.waitForStatus(waiting.body.job_id, ["awaiting_approval"]);
    const cases: Array<[string, string, Record<string, unknown>, number, string]> = [
      [idle, "messages", { content: "x", skill: "nope", attachments: inline("a") }, 404, "skill_not_found"],
      [idle, "messages", { content: "x", skill: "structured-summary", attachments: inline("b") }, 400, "invalid_request"],
      [idle, "run-skill", { skill: "nope", attachments: inline("c") }, 404, "skill_not_found"],
      [busy, "messages", { content: "x", attachments: inline("d") }, 409, "session_busy"],
      [busy, "run-skill", { skill: "structured-summary", inputs: { text: "t" }, attachments: inline("e") }, 409, "session_busy"],
    ];
    for (const key of [null, "refused"]) {
      for (const [session, route, body, status, code] of cases) {
        const headers: Record<string, string> = key ? { "idempotency-key": `${key}-${route}-${code}-${crypto.randomUUID()}` } : {};
        const r = await client.post(`/v1/sessions/${session}/${route}`, body, headers);
        expect({ key, route, body, status: r.status, code: r.body.error?.code }).toEqual({ key, route, body, status, code });
      }
    }
    await client.post(`/v1/jobs/${waiting.body.job_id}/cancel`);
    expect((await recorded(idle)).uploaded).toEqual([]);
    expect((await recorded(busy)).uploaded).toEqual([]);
  });

  test("a refusal after the files were stored (a usage limit) removes them, with or without Idempotency-Key; an accepted request keeps its file on replay", async () => {
    const admin = api(server.url, "");
    const bearer = { authorization: `Bearer ${ROOT}` };
    const session = (await client.post("/v1/sessions", { user_id: "u-limited" })).body.id;
    expect((await admin.put(`/v1/apps/${server.ctx.appId}/limits`, { per_user: { daily_credits: 1 }, reservation: { credits: 5 } }, bearer)).status).toBe(200);
    try {
      for (const key of [null, `limited-${crypto.randomUUID()}`]) {
        for (const route of ["messages", "run-skill"]) {
          const body = { ...(route === "messages" ? { content: "x" } : { skill: "structured-summary", inputs: { text: "t" } }), attachments: inline(`limited ${route} ${key}`) };
          const r = await client.post(`/v1/sessions/${session}/${route}`, body, key ? { "idempotency-key": `${key}-${route}` } : {});
          expect({ key, route, status: r.status, code: r.body.error?.code }).toEqual({ key, route, status: 403, code: "usage_limit_exceeded" });
        }
      }
    } finally {
      expect((await admin.del(`/v1/apps/${server.ctx.appId}/limits`, bearer)).status).toBe(200);
    }
    const { uploaded, removed } = await recorded(session);
    expect(uploaded.length).toBe(4);
    expect(removed.sort()).toEqual(uploaded.sort());
    expect((await client.get(`/v1/sessions/${session}/files`)).body.data).toEqual([]);

    // Accepted under a key: its file stays, and the replay answers the same message naming it.
    const headers = { "idempotency-key": `kept-${crypto.randomUUID()}` };
    const body = { content: "keep", attachments: inline("kept file"), wait: true };
    const first = await client.post(`/v1/sessions/${session}/messages`, body, headers);
    expect(first.status).toBe(200);
    const again = await client.post(`/v1/sessions/${session}/messages`, body, headers);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(again.body.message_id).toBe(first.body.message_id);
    const files = (await client.get(`/v1/sessions/${session}/files`)).body.data;
    expect(files).toHaveLength(1);
    expect(files[0]).toMatchObject({ message_id: first.body.message_id, name: "n.txt" });
  });
});

for (const provider of ["openai", "anthropic"] as const) {
  describe(`through the ${provider} adapter`, () => {
    let wire: WireServer;
    let server: TestServer;
    let client: Api;
    beforeAll(async () => {
      wire = provider === "openai" ? startOpenAiWireServer() : startAnthropicWireServer();
      server = await startTestServer({
        API_KEY: TEST_KEY, LLM_PROVIDER: provider, LLM_API_KEY: "sk-test", LLM_MODEL: "model-x", FILE_MODEL_BUDGET_CHARS: "1000",
        LLM_BASE_URL: provider === "openai" ? wire.baseURL : wire.baseURL.replace(/\/v1$/, ""),
      });
      client = api(server.url);
    });
    afterAll(async () => {
      await server?.stop();
      wire?.stop();
    });

    test("a text file and an image arrive in the provider's own format; an over-budget file arrives cut and marked", async () => {
      const session = (await client.post("/v1/sessions", { user_id: "u-wire" })).body.id;
      const text = await uploadTo(server, session, TEXT, "secret.txt", "text/plain");
      const image = await uploadTo(server, session, PNG_1X1, "pixel.png", "image/png");
      const long = await uploadTo(server, session, "x".repeat(2000), "long.txt", "text/plain");
      const before = wire.requests.length;
      const r = await client.post(`/v1/sessions/${session}/messages`, {
        content: "Describe these", wait: true,
        attachments: [{ type: "file", file_id: text.id }, { type: "file", file_id: image.id }, { type: "file", file_id: long.id }],
      });
      expect(r.body.status).toBe("completed");
      expect(wire.requests.length).toBe(before + 1);
      const body = wire.requests.at(-1)!.body;
      const user = body.messages.at(-1);
      expect(user.role).toBe("user");
      const parts = user.content as any[];
      expect(parts[0]).toEqual({ type: "text", text: "Describe these\n[attachment secret.txt]\n[attachment pixel.png]\n[attachment long.txt]" });
      expect(parts[1]).toEqual({ type: "text", text: `<file name="secret.txt" type="text/plain">\n${TEXT}\n</file>` });
      if (provider === "openai") {
        expect(parts[2]).toEqual({ type: "image_url", image_url: { url: `data:image/png;base64,${b64(PNG_1X1)}` } });
      } else {
        expect(parts[2]).toEqual({ type: "image", source: { type: "base64", media_type: "image/png", data: b64(PNG_1X1) } });
      }
      // 1000 characters of budget: 44 went to the first file, so 956 of the 2000 are shown, then the mark.
      expect(parts[3].type).toBe("text");
      expect(parts[3].text).toBe(`<file name="long.txt" type="text/plain">\n${"x".repeat(956)}\n[… cut: 956 of 2000 characters of long.txt are shown; the rest is over the file budget]\n</file>`);
    });
  });
}
