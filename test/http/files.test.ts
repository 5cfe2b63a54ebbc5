/**
 * Files end to end, over a real port: multipart uploads, a session's attachments and artifacts,
 * signed download and upload URLs (expired and tampered signatures refused, a second PUT refused),
 * removal and the collection of content no file references, who may see what, and bad input — always
 * a 4xx in the error envelope.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { LocalBlobStore } from "../../src/blobs/local.ts";
import { api, TEST_KEY, type Api } from "../support/api.ts";
import { json, startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
let client: Api;
let blobs: LocalBlobStore;
let sessionId: string;

const sha = (bytes: Uint8Array | string) => new Bun.CryptoHasher("sha256").update(bytes).digest("hex");

/** POSTs a multipart form to the session's files. */
async function upload(session: string, parts: Array<[string, string | Blob, string?]>, headers: Record<string, string> = { "x-api-key": TEST_KEY }) {
  const form = new FormData();
  for (const [name, value, filename] of parts) {
    if (typeof value === "string") form.append(name, value);
    else form.append(name, value, filename);
  }
  const res = await fetch(`${server.url}/v1/sessions/${session}/files`, { method: "POST", headers, body: form });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, headers: res.headers };
}

beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY, SANDBOX_CHUNK_DELAY_MS: "0", MAX_FILE_BYTES: "200000", BODY_TIMEOUT_MS: "500" });
  client = api(server.url);
  blobs = server.ctx.files!.blobs as LocalBlobStore;
  sessionId = (await client.post("/v1/sessions", { user_id: "user-files" })).body.id;
});
afterAll(async () => {
  await server?.stop();
});

describe("multipart uploads", () => {
  test("a file uploads, lists as an attachment, reads back through its signed download URL", async () => {
    const content = "Quarterly numbers: revenue 42, costs 17.\n";
    const r = await upload(sessionId, [["file", new Blob([content], { type: "text/plain" }), "numbers.txt"]]);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ object: "file", name: "numbers.txt", content_type: "text/plain", size: content.length, sha256: sha(content), role: "attachment", source: "multipart", status: "uploaded", session_id: sessionId, user_id: "user-files" });
    expect(r.body.download_url).toStartWith(`${server.url}/downloads/${r.body.id}?expires=`);
    // On disk under its hash, and nowhere else (no staging copy left).
    expect(existsSync(blobs.pathOf(sha(content)))).toBe(true);
    expect(readdirSync(join(server.dataDir, "blobs", "staging"))).toEqual([]);

    const list = await client.get(`/v1/sessions/${sessionId}/files`);
    expect(list.status).toBe(200);
    expect(list.body.data.map((f: any) => f.id)).toContain(r.body.id);

    const got = await client.get(`/v1/files/${r.body.id}`);
    expect(got.status).toBe(200);
    const download = await fetch(got.body.download_url); // no API key
    expect(download.status).toBe(200);
    expect(await download.text()).toBe(content);
    expect(download.headers.get("content-type")).toBe("text/plain");
    expect(download.headers.get("content-disposition")).toContain("numbers.txt");
    expect(download.headers.get("x-content-type-options")).toBe("nosniff");
  });

  test("a 'name' field names the file; the type comes from the part, or from the file name", async () => {
    const r = await upload(sessionId, [["name", "Renamed report.md"], ["file", new Blob(["# Title"], { type: "application/octet-stream" }), "x.md"]]);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ name: "Renamed report.md", content_type: "text/markdown" });
  });

  test("bad input is a 4xx in the envelope, and stores nothing", async () => {
    const before = readdirSync(join(server.dataDir, "blobs", "sha256")).length;
    const cases: Array<[string, () => Promise<{ status: number; body: any }>, number, string]> = [
      ["a type off the allow-list", () => upload(sessionId, [["file", new Blob(["MZ..."], { type: "application/x-msdownload" }), "setup.exe"]]), 415, "unsupported_media_type"],
      ["too large", () => upload(sessionId, [["file", new Blob(["x".repeat(200_001)], { type: "text/plain" }), "big.txt"]]), 413, "payload_too_large"],
      ["no file part", () => upload(sessionId, [["name", "only a name"]]), 400, "invalid_request"],
      ["an unknown field", () => upload(sessionId, [["file", new Blob(["a"], { type: "text/plain" }), "a.txt"], ["colour", "blue"]]), 400, "invalid_request"],
      ["two files", () => upload(sessionId, [["file", new Blob(["a"], { type: "text/plain" }), "a.txt"], ["file", new Blob(["b"], { type: "text/plain" }), "b.txt"]]), 400, "invalid_request"],
      ["JSON instead of a form", () => client.post(`/v1/sessions/${sessionId}/files`, { file: "x" }), 415, "unsupported_media_type"],
      ["a malformed multipart body", async () => {
        const res = await fetch(`${server.url}/v1/sessions/${sessionId}/files`, { method: "POST", headers: { "x-api-key": TEST_KEY, "content-type": "multipart/form-data; boundary=XYZ" }, body: "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nno end" });
        return { status: res.status, body: await res.json() };
      }, 400, "invalid_request"],
      ["a multipart type without a boundary", async () => {
        const res = await fetch(`${server.url}/v1/sessions/${sessionId}/files`, { method: "POST", headers: { "x-api-key": TEST_KEY, "content-type": "multipart/form-data" }, body: "x" });
        return { status: res.status, body: await res.json() };
      }, 400, "invalid_request"],
      ["an unknown session", () => upload("sess_nope", [["file", new Blob(["a"], { type: "text/plain" }), "a.txt"]]), 404, "session_not_found"],
      ["a bad session id", () => upload("bad%20id!", [["file", new Blob(["a"], { type: "text/plain" }), "a.txt"]]), 400, "invalid_request"],
      ["a bad file id", () => client.get("/v1/files/bad%20id!"), 400, "invalid_request"],
      ["an unknown file id", () => client.get("/v1/files/file_nope"), 404, "file_not_found"],
      ["deleting an unknown file", () => client.del("/v1/files/file_nope"), 404, "file_not_found"],
      ["an unknown role filter", () => client.get(`/v1/sessions/${sessionId}/files?role=other`), 400, "invalid_request"],
    ];
    for (const [why, run, status, code] of cases) {
      const r = await run();
      expect({ why, status: r.status, code: r.body?.error?.code }).toEqual({ why, status, code });
    }
    expect(readdirSync(join(server.dataDir, "blobs", "sha256")).length).toBe(before);
    expect(readdirSync(join(server.dataDir, "blobs", "staging"))).toEqual([]);
  });

  test("an image or PDF whose bytes are not one is 415 naming the field, and stores nothing", async () => {
    const { PNG_1X1, makePdf } = await import("../support/pdf.ts");
    const page = `<!doctype html><script>alert("${crypto.randomUUID()}")</script>`;
    for (const [type, name] of [["image/png", "x.png"], ["image/jpeg", "x.jpg"], ["image/gif", "x.gif"], ["image/webp", "x.webp"], ["application/pdf", "x.pdf"]]) {
      const r = await upload(sessionId, [["file", new Blob([page], { type }), name!]]);
      expect({ type, status: r.status, code: r.body.error?.code, param: r.body.error?.details?.param }).toEqual({ type, status: 415, code: "unsupported_media_type", param: "file" });
    }
    // Typed by the file name's extension alike.
    const byName = await upload(sessionId, [["file", new Blob([page], { type: "application/octet-stream" }), "photo.png"]]);
    expect(byName.status).toBe(415);
    expect(await blobs.has(sha(page))).toBe(false);
    expect(readdirSync(join(server.dataDir, "blobs", "staging"))).toEqual([]);
    // The real thing passes.
    expect((await upload(sessionId, [["file", new Blob([PNG_1X1], { type: "image/png" }), "pixel.png"]])).status).toBe(201);
    expect((await upload(sessionId, [["file", new Blob([makePdf("ok")], { type: "application/pdf" }), "ok.pdf"]])).status).toBe(201);
  });

  test("a declared length over the limit is 413 before the body is read; a stalled body is 408", async () => {
    const head = (length: number) => `POST /v1/sessions/${sessionId}/files HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: ${TEST_KEY}\r\n` +
      `content-type: multipart/form-data; boundary=B\r\ncontent-length: ${length}\r\n\r\n--B\r\n`;
    const tooBig = await raw(head(999_999_999));
    expect(tooBig).toStartWith("HTTP/1.1 413");
    expect(tooBig).toContain("payload_too_large");
    expect(tooBig.toLowerCase()).toContain("connection: close");
    // Half a body, then nothing: refused once the wait for the next chunk runs out (BODY_TIMEOUT_MS).
    const stalled = await raw(head(5000));
    expect(stalled).toStartWith("HTTP/1.1 408");
    expect(stalled).toContain("request_timeout");
    expect(readdirSync(join(server.dataDir, "blobs", "staging"))).toEqual([]);
  });
});

/** Sends raw bytes on a new connection; returns the answer once it is whole (or the server closes; 5 s at most). */
async function raw(request: string): Promise<string> {
  let received = "";
  let closed!: () => void;
  const done = new Promise<void>((resolve) => (closed = resolve));
  const socket = await Bun.connect({
    hostname: "127.0.0.1", port: server.port,
    socket: {
      data(_s, chunk) {
        received += new TextDecoder().decode(chunk);
        const length = /content-length: (\d+)/i.exec(received);
        if (length && received.includes("\r\n\r\n") && received.length - received.indexOf("\r\n\r\n") - 4 >= Number(length[1])) closed();
      },
      close() { closed(); },
      error() { closed(); },
    },
  });
  socket.write(request);
  await Promise.race([done, Bun.sleep(5000)]);
  socket.end();
  return received;
}

describe("signed URLs", () => {
  test("a signed upload URL takes bytes without an API key, once", async () => {
    const ticket = await client.post("/v1/uploads", { session_id: sessionId, name: "notes.txt", content_type: "text/plain", size: 11 });
    expect(ticket.status).toBe(201);
    expect(ticket.body).toMatchObject({ object: "upload", method: "PUT", content_type: "text/plain", max_bytes: 11 });
    const pending = await client.get(`/v1/files/${ticket.body.file_id}`);
    expect(pending.body).toMatchObject({ status: "pending", download_url: null });

    const put = await fetch(ticket.body.upload_url, { method: "PUT", body: "hello world" });
    expect(put.status).toBe(201);
    expect(await put.json()).toMatchObject({ id: ticket.body.file_id, status: "uploaded", size: 11, sha256: sha("hello world"), source: "signed_url" });

    const again = await fetch(ticket.body.upload_url, { method: "PUT", body: "hello world" });
    expect(again.status).toBe(409);
    expect((await json(again)).error.code).toBe("upload_already_used");

    const got = await client.get(`/v1/files/${ticket.body.file_id}`);
    expect(await (await fetch(got.body.download_url)).text()).toBe("hello world");
    const listed = await client.get(`/v1/sessions/${sessionId}/files?role=attachment`);
    expect(listed.body.data.map((f: any) => f.id)).toContain(ticket.body.file_id);
  });

  test("expired and tampered signatures get 403; the size declared holds", async () => {
    const ticket = (await client.post("/v1/uploads", { session_id: sessionId, name: "a.txt", content_type: "text/plain", size: 3 })).body;
    const url = new URL(ticket.upload_url);
    const fileId = ticket.file_id as string;
    const urls = server.ctx.files!.urls;
    const past = Math.floor(Date.now() / 1000) - 5;
    const expired = `${server.url}/uploads/${fileId}?expires=${past}&sig=${urls.sign("upload", fileId, past)}`;
    const tamperedSig = `${server.url}/uploads/${fileId}?expires=${url.searchParams.get("expires")}&sig=${"0".repeat(64)}`;
    const laterExpiry = `${server.url}/uploads/${fileId}?expires=${Number(url.searchParams.get("expires")) + 3600}&sig=${url.searchParams.get("sig")}`;
    const otherFile = `${server.url}/uploads/file_other?${url.searchParams}`;
    const asDownload = `${server.url}/downloads/${fileId}?${url.searchParams}`;
    const unsigned = `${server.url}/uploads/${fileId}`;
    // The query must be exactly as issued: any other spelling of the same values is refused too.
    const expires = url.searchParams.get("expires")!;
    const sig = url.searchParams.get("sig")!;
    const base = `${server.url}/uploads/${fileId}`;
    const respelled = [
      `${base}?expires=0${expires}&sig=${sig}`, `${base}?expires=${expires}&sig=${sig}&sig=${sig}`, `${base}?expires=${expires}&expires=${expires}&sig=${sig}`,
      `${base}?sig=${sig}&expires=${expires}`, `${base}?expires=${expires}&sig=${sig}&x=1`, `${base}?expires=${expires}&sig=${sig.toUpperCase()}`,
      `${base}?expires=%3${expires.slice(0, 1)}${expires.slice(1)}&sig=${sig}`, `${base}?expires=${expires}&sig=${sig}&`, `${base}?expires=${expires}.0&sig=${sig}`,
      `${base}?expires=${expires}&sig=${sig}${"0".repeat(200)}`, `${base}?expires=${"9".repeat(30)}&sig=${sig}`,
    ];
    for (const target of respelled) {
      const res = await fetch(target, { method: "PUT", body: "abc" });
      expect({ target, status: res.status, code: (await json(res)).error.code }).toEqual({ target, status: 403, code: "invalid_signature" });
    }
    for (const [target, code, method] of [
      [expired, "signature_expired", "PUT"], [tamperedSig, "invalid_signature", "PUT"], [laterExpiry, "invalid_signature", "PUT"],
      [otherFile, "invalid_signature", "PUT"], [asDownload, "invalid_signature", "GET"], [unsigned, "invalid_signature", "PUT"],
    ] as const) {
      const res = await fetch(target, { method, ...(method === "PUT" ? { body: "abc" } : {}) });
      expect({ target, status: res.status, code: (await json(res)).error.code }).toEqual({ target, status: 403, code });
    }
    // Fewer or more bytes than declared are refused and store nothing; the URL still works.
    const short = await fetch(ticket.upload_url, { method: "PUT", body: "ab" });
    expect(short.status).toBe(400);
    const long = await fetch(ticket.upload_url, { method: "PUT", body: "abcd" });
    expect(long.status).toBe(413);
    expect(await blobs.has(sha("ab"))).toBe(false);
    expect((await fetch(ticket.upload_url, { method: "PUT", body: "abc" })).status).toBe(201);
  });

  test("a signed upload whose bytes are not the declared image is 415; the URL still takes the right bytes", async () => {
    const { PNG_1X1 } = await import("../support/pdf.ts");
    const ticket = (await client.post("/v1/uploads", { session_id: sessionId, name: "photo.png", content_type: "image/png" })).body;
    const page = `<html>${crypto.randomUUID()}</html>`;
    const wrong = await fetch(ticket.upload_url, { method: "PUT", body: page });
    expect(wrong.status).toBe(415);
    expect((await json(wrong)).error).toMatchObject({ code: "unsupported_media_type", details: { param: "body" } });
    expect(await blobs.has(sha(page))).toBe(false);
    expect((await client.get(`/v1/files/${ticket.file_id}`)).body.status).toBe("pending");
    const right = await fetch(ticket.upload_url, { method: "PUT", body: PNG_1X1 });
    expect(right.status).toBe(201);
  });

  test("an expired download URL gets 403; so does any other spelling of a valid one", async () => {
    const r = await upload(sessionId, [["file", new Blob(["dl"], { type: "text/plain" }), "dl.txt"]]);
    const issued = new URL(r.body.download_url);
    const [expires, sig] = [issued.searchParams.get("expires")!, issued.searchParams.get("sig")!];
    expect((await fetch(r.body.download_url)).status).toBe(200);
    for (const search of [`?expires=0${expires}&sig=${sig}`, `?expires=${expires}&sig=${sig}&sig=${sig}`, `?sig=${sig}&expires=${expires}`, `?expires=${expires}&sig=${sig}&download=1`]) {
      const res = await fetch(`${server.url}/downloads/${r.body.id}${search}`);
      expect({ search, status: res.status, code: (await json(res)).error.code }).toEqual({ search, status: 403, code: "invalid_signature" });
    }
    const past = Math.floor(Date.now() / 1000) - 1;
    const res = await fetch(`${server.url}/downloads/${r.body.id}?expires=${past}&sig=${server.ctx.files!.urls.sign("download", r.body.id, past)}`);
    expect(res.status).toBe(403);
    expect((await json(res)).error.code).toBe("signature_expired");
  });

  test("bad upload tickets are 4xx", async () => {
    const bad: Array<[unknown, number]> = [
      [{ name: "a.exe", content_type: "application/x-msdownload" }, 415],
      [{ name: "a.txt", content_type: "text/plain", size: 200_001 }, 400],
      [{ name: "", content_type: "text/plain" }, 400],
      [{ name: "a/../b", content_type: "text/plain" }, 400],
      [{ name: "a.txt", content_type: "text/plain", session_id: "sess_nope" }, 404],
      [{ name: "a.txt", content_type: "text/plain", extra: 1 }, 400],
    ];
    for (const [body, status] of bad) expect({ body, status: (await client.post("/v1/uploads", body)).status }).toEqual({ body, status });
  });
});

describe("removal and collection", () => {
  test("a file's bytes go when the last file with that content is removed, not before", async () => {
    const content = `shared content ${crypto.randomUUID()}`;
    const a = await upload(sessionId, [["file", new Blob([content], { type: "text/plain" }), "a.txt"]]);
    const b = await upload(sessionId, [["file", new Blob([content], { type: "text/plain" }), "b.txt"]]);
    expect(a.body.sha256).toBe(b.body.sha256);
    const path = blobs.pathOf(sha(content));

    const delA = await client.del(`/v1/files/${a.body.id}`);
    expect(delA.status).toBe(200);
    expect(delA.body).toEqual({ id: a.body.id, object: "file", deleted: true });
    expect(existsSync(path)).toBe(true); // b still has it
    expect((await client.get(`/v1/files/${a.body.id}`)).status).toBe(404);
    expect(await (await fetch(b.body.download_url)).text()).toBe(content);
    // A's download URL stops working with it.
    expect((await fetch(a.body.download_url)).status).toBe(404);

    expect((await client.del(`/v1/files/${b.body.id}`)).status).toBe(200);
    expect(existsSync(path)).toBe(false);
    expect(readdirSync(join(server.dataDir, "blobs", "parked"))).toEqual([]);
    expect((await client.del(`/v1/files/${b.body.id}`)).status).toBe(404);

    // The same bytes uploaded again are stored again.
    const c = await upload(sessionId, [["file", new Blob([content], { type: "text/plain" }), "c.txt"]]);
    expect(c.status).toBe(201);
    expect(existsSync(path)).toBe(true);
    expect(await (await fetch(c.body.download_url)).text()).toBe(content);
  });

  test("removing a pending signed upload makes its URL stop working", async () => {
    const ticket = (await client.post("/v1/uploads", { name: "later.txt", content_type: "text/plain" })).body;
    expect((await client.del(`/v1/files/${ticket.file_id}`)).status).toBe(200);
    const put = await fetch(ticket.upload_url, { method: "PUT", body: "too late" });
    expect(put.status).toBe(404);
    expect(await blobs.has(sha("too late"))).toBe(false);
  });
});

describe("who may see what", () => {
  test("another app, and another end user of the same app, can neither read nor remove a file; its user can", async () => {
    const { newApiKey, keyHash, keyPrefix } = await import("../../src/domain/app/keys.ts");
    const { newResourceId } = await import("../../src/core/ids.ts");
    const otherKey = newApiKey("live");
    await server.ctx.repos.apps.handle("app_files_other", { type: "CreateApp", app_id: "app_files_other", name: "Other" }, { appId: "app_ops" });
    await server.ctx.repos.apps.handle("app_files_other", { type: "IssueKey", key: {
      key_id: newResourceId("key"), name: "other", prefix: keyPrefix(otherKey), hash: keyHash(otherKey), mode: "live",
      scopes: ["data:read", "data:write"], agent_ids: null, user_id: null, expires_at: null,
    } }, { appId: "app_ops" });
    const other = api(server.url, otherKey);
    for (let i = 0; i < 200 && (await other.get("/v1/sessions")).status !== 200; i++) await Bun.sleep(20);

    const session = (await client.post("/v1/sessions", { user_id: "owner-user" })).body.id;
    const file = (await upload(session, [["file", new Blob(["private words"], { type: "text/plain" }), "private.txt"]])).body;
    const mine = (await client.post("/v1/end-user-tokens", { user_id: "owner-user" })).body.token;
    const theirs = (await client.post("/v1/end-user-tokens", { user_id: "someone-else" })).body.token;
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
    const plain = api(server.url, "");

    // Another app: the file does not exist for it.
    expect((await other.get(`/v1/files/${file.id}`)).status).toBe(404);
    expect((await other.del(`/v1/files/${file.id}`)).status).toBe(404);
    expect((await other.get(`/v1/sessions/${session}/files`)).status).toBe(404);
    expect((await other.post("/v1/uploads", { session_id: session, name: "x.txt", content_type: "text/plain" })).status).toBe(404);
    // Another end user of the app: refused.
    expect((await plain.get(`/v1/files/${file.id}`, bearer(theirs))).body.error.code).toBe("permission_denied");
    expect((await plain.del(`/v1/files/${file.id}`, bearer(theirs))).status).toBe(403);
    expect((await plain.get(`/v1/sessions/${session}/files`, bearer(theirs))).status).toBe(403);
    const foreignUpload = await fetch(`${server.url}/v1/sessions/${session}/files`, { method: "POST", headers: bearer(theirs), body: (() => { const f = new FormData(); f.append("file", new Blob(["x"], { type: "text/plain" }), "x.txt"); return f; })() });
    expect(foreignUpload.status).toBe(403);
    // An app-level file (a signed upload without a session) is not an end user's to see.
    const appTicket = (await client.post("/v1/uploads", { name: "app.txt", content_type: "text/plain" })).body;
    const appFile = appTicket.file_id;
    expect((await plain.get(`/v1/files/${appFile}`, bearer(mine))).status).toBe(403);
    expect((await fetch(appTicket.upload_url, { method: "PUT", body: "app-level words" })).status).toBe(201);
    expect((await plain.get(`/v1/files/${appFile}`, bearer(mine))).status).toBe(403);
    // Nor can an end user read it, or another user's file, by attaching it: to a message or a skill run.
    const theirSession = (await client.post("/v1/sessions", { user_id: "someone-else" })).body.id;
    for (const route of ["messages", "run-skill"]) {
      const body = route === "messages" ? { content: "read it" } : { skill: "structured-summary", inputs: { text: "read it" } };
      for (const [token, sid, fileId] of [[theirs, theirSession, file.id], [mine, session, appFile]] as const) {
        const r = await plain.post(`/v1/sessions/${sid}/${route}`, { ...body, attachments: [{ type: "file", file_id: fileId }] }, bearer(token));
        expect({ route, fileId, status: r.status, code: r.body.error?.code }).toEqual({ route, fileId, status: 403, code: "permission_denied" });
      }
    }
    for (const sid of [session, theirSession]) expect((await client.get(`/v1/sessions/${sid}/messages`)).body.data).toEqual([]);
    // The app's backend (a server key) may give its own app-level file to a user's session.
    const given = await client.post(`/v1/sessions/${session}/messages`, { content: "read it", attachments: [{ type: "file", file_id: appFile }], wait: true });
    expect(given.body.reply.content).toContain("«app-level words»");
    // The file's own user: reads it, and may remove it.
    const read = await plain.get(`/v1/files/${file.id}`, bearer(mine));
    expect(read.status).toBe(200);
    expect(await (await fetch(read.body.download_url)).text()).toBe("private words");
    expect((await plain.del(`/v1/files/${file.id}`, bearer(mine))).status).toBe(200);
    expect((await client.get(`/v1/files/${file.id}`)).status).toBe(404);
  });

  test("a test key's files are apart from live ones both ways", async () => {
    const file = (await upload(sessionId, [["file", new Blob(["live only"], { type: "text/plain" }), "live.txt"]])).body;
    const { newApiKey, keyHash, keyPrefix } = await import("../../src/domain/app/keys.ts");
    const { newResourceId } = await import("../../src/core/ids.ts");
    const key = newApiKey("test");
    await server.ctx.repos.apps.handle(server.ctx.appId, { type: "IssueKey", key: {
      key_id: newResourceId("key"), name: "test", prefix: keyPrefix(key), hash: keyHash(key), mode: "test",
      scopes: ["data:read", "data:write"], agent_ids: null, user_id: null, expires_at: null,
    } }, { appId: "app_ops" });
    const test = api(server.url, key);
    for (let i = 0; i < 200 && (await test.get("/v1/sessions")).status !== 200; i++) await Bun.sleep(20);
    expect((await test.get(`/v1/files/${file.id}`)).status).toBe(404);
    expect((await test.del(`/v1/files/${file.id}`)).status).toBe(404);
  });
});

describe("attachments and artifacts", () => {
  test("files the agent saves are artifacts, listed apart from the user's attachments", async () => {
    const agent = (await client.post("/v1/agents", { name: "writer", approval: "never", tools: [{ type: "builtin", name: "save_file" }] })).body.id;
    const session = (await client.post("/v1/sessions", { user_id: "u-art", agent_id: agent })).body.id;
    const attachment = (await upload(session, [["file", new Blob(["brief"], { type: "text/plain" }), "brief.txt"]])).body;
    const turn = await client.post(`/v1/sessions/${session}/messages`, {
      content: 'call save_file {"name": "summary.md", "content": "# Summary\\nAll good."}', wait: true,
    });
    expect(turn.body.status).toBe("completed");
    const tool = turn.body.reply.tool_calls[0];
    expect(tool).toMatchObject({ name: "save_file", error: null, result: { name: "summary.md", content_type: "text/markdown", size: 19 } });

    // Registered as the session's next asset too, by file id.
    expect(tool.result.assets).toEqual([{ asset_label: "asset_1", kind: "file", url: null, file_id: tool.result.file_id, prompt: null }]);
    const artifacts = (await client.get(`/v1/sessions/${session}/files?role=artifact`)).body.data;
    expect(artifacts).toHaveLength(1);
    expect(artifacts[0]).toMatchObject({ id: tool.result.file_id, name: "summary.md", role: "artifact", source: "tool", job_id: turn.body.job_id, user_id: "u-art" });
    const attachments = (await client.get(`/v1/sessions/${session}/files?role=attachment`)).body.data;
    expect(attachments.map((f: any) => f.id)).toEqual([attachment.id]);
    const all = (await client.get(`/v1/sessions/${session}/files`)).body.data;
    expect(all.map((f: any) => f.id)).toEqual([attachment.id, tool.result.file_id]);
    const got = await client.get(`/v1/files/${tool.result.file_id}`);
    expect(await (await fetch(got.body.download_url)).text()).toBe("# Summary\nAll good.");

    // Pages: one at a time, in order, each seen once.
    const first = (await client.get(`/v1/sessions/${session}/files?limit=1`)).body;
    expect(first.has_more).toBe(true);
    const second = (await client.get(`/v1/sessions/${session}/files?limit=1&cursor=${encodeURIComponent(first.next_cursor)}`)).body;
    expect([first.data[0].id, second.data[0].id]).toEqual([attachment.id, tool.result.file_id]);
    expect(second.has_more).toBe(false);
  });
});

describe("a deleted session's files", () => {
  test("go with it: refused by id and by URL, removed, their content collected unless another file has it", async () => {
    const session = (await client.post("/v1/sessions", { user_id: "u-deleted" })).body.id;
    const keeper = (await client.post("/v1/sessions", { user_id: "u-deleted" })).body.id;
    const only = `only in the deleted session ${crypto.randomUUID()}`;
    const shared = `shared with another session ${crypto.randomUUID()}`;
    const a = (await upload(session, [["file", new Blob([only], { type: "text/plain" }), "only.txt"]])).body;
    const b = (await upload(session, [["file", new Blob([shared], { type: "text/plain" }), "shared.txt"]])).body;
    const kept = (await upload(keeper, [["file", new Blob([shared], { type: "text/plain" }), "kept.txt"]])).body;
    const sent = await client.post(`/v1/sessions/${session}/messages`, { content: "note", attachments: [{ type: "file", name: "n.txt", data: Buffer.from(`inline ${only}`).toString("base64") }], wait: true });
    expect(sent.status).toBe(200);
    const inline = (await client.get(`/v1/sessions/${session}/files`)).body.data.find((f: any) => f.source === "message").id;
    const pending = (await client.post("/v1/uploads", { session_id: session, name: "later.txt", content_type: "text/plain" })).body;

    expect((await client.del(`/v1/sessions/${session}`)).status).toBe(200);
    for (const id of [a.id, b.id, inline, pending.file_id]) {
      const r = await client.get(`/v1/files/${id}`);
      expect({ id, status: r.status, code: r.body.error?.code }).toEqual({ id, status: 404, code: "file_not_found" });
      expect((await client.del(`/v1/files/${id}`)).status).toBe(404);
    }
    expect((await fetch(a.download_url)).status).toBe(404);
    expect((await fetch(pending.upload_url, { method: "PUT", body: "too late" })).status).toBe(404);
    // Removed (FileRemoved), and the bytes no other file has are gone; the shared ones stay for the other session's file.
    const removed = new Set<string>();
    for await (const e of server.ctx.store.readAll()) if (e.type === "FileRemoved") removed.add((e.data as { file_id: string }).file_id);
    for (const id of [a.id, b.id, inline, pending.file_id]) expect({ id, removed: removed.has(id) }).toEqual({ id, removed: true });
    expect(existsSync(blobs.pathOf(sha(only)))).toBe(false);
    expect(existsSync(blobs.pathOf(sha(`inline ${only}`)))).toBe(false);
    expect(await (await fetch(kept.download_url)).text()).toBe(shared);
  });

  test("deleted while no process listened: its files are refused at once, and the reconciler removes them", async () => {
    const { reconcile } = await import("../../src/jobs/reconciler.ts");
    const { TurnCoordinator } = await import("../../src/app/turnCoordinator.ts");
    const session = (await client.post("/v1/sessions", { user_id: "u-unheard" })).body.id;
    const content = `unheard ${crypto.randomUUID()}`;
    const file = (await upload(session, [["file", new Blob([content], { type: "text/plain" }), "unheard.txt"]])).body;
    // No coordinator follows the deletion (as when every worker was down): the file stays recorded.
    await server.ctx.turns.stop();
    try {
      const { position } = await server.ctx.repos.sessions.handle(session, { type: "DeleteSession" }, { appId: server.ctx.appId });
      await server.ctx.projections.waitForPosition(position!, 5000);
      expect((await server.ctx.repos.files.load(file.id)).state.status).toBe("uploaded");
      expect((await client.get(`/v1/files/${file.id}`)).body.error?.code).toBe("file_not_found");
      expect((await fetch(file.download_url)).status).toBe(404);
      expect((await reconcile(server.ctx)).files).toBe(1);
      expect((await server.ctx.repos.files.load(file.id)).state.status).toBe("removed");
      expect(existsSync(blobs.pathOf(sha(content)))).toBe(false);
      expect((await reconcile(server.ctx)).files).toBe(0);
    } finally {
      server.ctx.turns = new TurnCoordinator(server.ctx);
      await server.ctx.turns.start();
    }
  });
});
