/**
 * The server with BLOB_STORE=s3 against a real S3 server (s3rver from npm) on 127.0.0.1: an upload
 * lands in the bucket (checked in the S3 server's own folder), downloads through the signed URL, and
 * its object is deleted when the file is removed.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import S3rver from "s3rver";
import { api, TEST_KEY } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const root = mkdtempSync(join(tmpdir(), "agentry-s3-"));
let s3: S3rver;
let server: TestServer;

beforeAll(async () => {
  s3 = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory: root, configureBuckets: [{ name: "files" }] });
  const { port } = await s3.run();
  server = await startTestServer({
    API_KEY: TEST_KEY, BLOB_STORE: "s3", S3_ENDPOINT: `http://127.0.0.1:${port}`, S3_BUCKET: "files", S3_REGION: "us-east-1",
    S3_ACCESS_KEY_ID: "S3RVER", S3_SECRET_ACCESS_KEY: "S3RVER", S3_PREFIX: "agentry/",
  });
});
afterAll(async () => {
  await server?.stop();
  await s3?.close();
  rmSync(root, { recursive: true, force: true });
});

test("upload, signed download and removal go through the S3 bucket", async () => {
  const client = api(server.url);
  const session = (await client.post("/v1/sessions", { user_id: "u-s3" })).body.id;
  const content = `in the bucket ${crypto.randomUUID()}`;
  const form = new FormData();
  form.append("file", new Blob([content], { type: "text/plain" }), "s3.txt");
  const up = await fetch(`${server.url}/v1/sessions/${session}/files`, { method: "POST", headers: { "x-api-key": TEST_KEY }, body: form });
  expect(up.status).toBe(201);
  const file = (await up.json()) as { id: string; sha256: string; download_url: string };
  const object = join(root, "files", "agentry", "sha256", `${file.sha256}._S3rver_object`);
  expect(existsSync(object)).toBe(true);
  expect(existsSync(join(server.dataDir, "blobs", "sha256"))).toBe(false); // nothing on local disk but staging
  const download = await fetch(file.download_url);
  expect(download.status).toBe(200);
  expect(await download.text()).toBe(content);
  // The model reads it from the bucket too.
  const turn = await client.post(`/v1/sessions/${session}/messages`, { content: "read it", attachments: [{ type: "file", file_id: file.id }], wait: true });
  expect(turn.body.reply.content).toContain(`«${content}»`);
  expect((await client.del(`/v1/files/${file.id}`)).status).toBe(200);
  expect(existsSync(object)).toBe(false);
});

test("bytes a stopped collection left parked in the bucket are put back: on read, and by recovery", async () => {
  const { chunksOf } = await import("../../src/blobs/staging.ts");
  const { recoverParked, storeFile } = await import("../../src/app/files.ts");
  const { newResourceId } = await import("../../src/core/ids.ts");
  const ctx = server.ctx;
  const meta = () => ({ appId: ctx.appId, now: Date.now() });
  const put = async (content: string) => {
    const fileId = newResourceId("file");
    await storeFile(ctx, {
      owner: { file_id: fileId, session_id: null, user_id: null, agent_id: null }, chunks: chunksOf(content),
      name: "f.txt", content_type: "text/plain", role: "attachment", source: "multipart",
    }, meta());
    return fileId;
  };
  const sha = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest("hex");
  // A's collector found no reference, B (the same bytes) arrived, the collector parked them and stopped.
  const stopped = async (content: string) => {
    const a = await put(content);
    await ctx.repos.files.handle(a, { type: "RemoveFile" }, meta());
    await ctx.repos.blobs.handle(sha(content), { type: "ReleaseBlob", sha256: sha(content), file_id: a }, meta());
    const b = await put(content);
    await ctx.files!.blobs.park(sha(content));
    expect(await ctx.files!.blobs.open(sha(content))).toBeNull();
    return b;
  };
  const onRead = `s3 parked read ${crypto.randomUUID()}`;
  const b = await stopped(onRead);
  const res = await fetch(ctx.files!.urls.url(server.url, "download", b, 60).url);
  expect(await res.text()).toBe(onRead);

  const atStart = `s3 parked start ${crypto.randomUUID()}`;
  await stopped(atStart);
  expect((await recoverParked(ctx)).restored).toBe(1);
  expect(await (await ctx.files!.blobs.open(sha(atStart)))!.text()).toBe(atStart);
  expect(await ctx.files!.blobs.parkedCopies()).toEqual([]);
});
