/**
 * Collecting content no file references, when a new file with the same bytes arrives at the worst
 * moments: right after the bytes were parked, and right after the collection was recorded. Neither
 * may lose the new file's bytes. Also the file and blob deciders' rules, without I/O.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { LocalBlobStore } from "../../src/blobs/local.ts";
import { chunksOf } from "../../src/blobs/staging.ts";
import { releaseBlob, removeFile, storeFile } from "../../src/app/files.ts";
import { newResourceId } from "../../src/core/ids.ts";
import { blobDecider, fileDecider, type FileState } from "../../src/domain/file/file.ts";
import { fold } from "../../src/core/decider.ts";
import { TEST_KEY } from "../support/api.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
const meta = () => ({ appId: server.ctx.appId, now: Date.now() });
const sha = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest("hex");

async function store(content: string): Promise<string> {
  const fileId = newResourceId("file");
  await storeFile(server.ctx, {
    owner: { file_id: fileId, session_id: null, user_id: null, agent_id: null }, chunks: chunksOf(content),
    name: "f.txt", content_type: "text/plain", role: "attachment", source: "multipart",
  }, meta());
  return fileId;
}

beforeAll(async () => {
  server = await startTestServer({ API_KEY: TEST_KEY });
});
afterAll(async () => {
  await server?.stop();
});

describe("collection racing an upload of the same bytes", () => {
  test("an upload between parking and recording the collection keeps the bytes (the collection is refused, they are put back)", async () => {
    const content = `race one ${crypto.randomUUID()}`;
    const blobs = server.ctx.files!.blobs as LocalBlobStore;
    const a = await store(content);
    let b: string | null = null;
    const park = blobs.park.bind(blobs);
    blobs.park = async (hash) => {
      const parked = await park(hash);
      blobs.park = park;
      b = await store(content); // arrives while the bytes are out of sight
      return parked;
    };
    await removeFile(server.ctx, a, meta());
    expect(b).not.toBeNull();
    expect(existsSync(blobs.pathOf(sha(content)))).toBe(true);
    expect((await server.ctx.repos.blobs.load(sha(content))).state).toEqual({ refs: [b!], collected: false });
    await removeFile(server.ctx, b!, meta());
    expect(existsSync(blobs.pathOf(sha(content)))).toBe(false);
  });

  test("an upload after the collection was recorded stores the bytes again", async () => {
    const content = `race two ${crypto.randomUUID()}`;
    const blobs = server.ctx.files!.blobs as LocalBlobStore;
    const a = await store(content);
    let b: string | null = null;
    const purge = blobs.purge.bind(blobs);
    blobs.purge = async (parked) => {
      blobs.purge = purge;
      b = await store(content); // the collection is recorded; the parked copy not yet purged
      await purge(parked);
    };
    await removeFile(server.ctx, a, meta());
    expect(b).not.toBeNull();
    expect(await (await blobs.open(sha(content)))!.text()).toBe(content);
  });

  test("releasing a reference twice, or one never taken, collects nothing twice", async () => {
    const content = `twice ${crypto.randomUUID()}`;
    const a = await store(content);
    await removeFile(server.ctx, a, meta());
    const blobs = server.ctx.files!.blobs;
    expect(await releaseBlob(server.ctx, sha(content), a, meta(), blobs)).toBe(false);
    expect(await releaseBlob(server.ctx, sha(content), "file_never", meta(), blobs)).toBe(false);
  });
});

describe("deciders", () => {
  const authorized = (expiresAt: number, size: number | null = 3): FileState => fold(fileDecider, [{ type: "UploadAuthorized", data: {
    file_id: "file_1", session_id: "sess_1", user_id: "u", agent_id: "agt", name: "a.txt", content_type: "text/plain", size, expires_at: expiresAt,
  } }]);
  const HASH = "a".repeat(64);

  test("a signed upload completes once, before it expires, with the declared size", () => {
    const state = authorized(1000);
    expect(() => fileDecider.decide({ type: "CompleteSignedUpload", sha256: HASH, size: 3, now: 1001 }, state)).toThrow("expired");
    expect(() => fileDecider.decide({ type: "CompleteSignedUpload", sha256: HASH, size: 4, now: 10 }, state)).toThrow("declared");
    const [uploaded] = fileDecider.decide({ type: "CompleteSignedUpload", sha256: HASH, size: 3, now: 10 }, state);
    expect(uploaded).toMatchObject({ type: "FileUploaded", data: { file_id: "file_1", sha256: HASH, size: 3, role: "attachment", source: "signed_url", session_id: "sess_1" } });
    const after = fileDecider.evolve(state, uploaded!);
    expect(() => fileDecider.decide({ type: "CompleteSignedUpload", sha256: HASH, size: 3, now: 10 }, after)).toThrow("already used");
    const [removed] = fileDecider.decide({ type: "RemoveFile" }, after);
    expect(removed).toEqual({ type: "FileRemoved", data: { file_id: "file_1", sha256: HASH } });
    expect(() => fileDecider.decide({ type: "RemoveFile" }, fileDecider.evolve(after, removed!))).toThrow("not found");
  });

  test("a pending upload may be removed (no content to release); its URL then refuses", () => {
    const state = authorized(1000);
    const [removed] = fileDecider.decide({ type: "RemoveFile" }, state);
    expect(removed).toEqual({ type: "FileRemoved", data: { file_id: "file_1", sha256: null } });
    expect(() => fileDecider.decide({ type: "CompleteSignedUpload", sha256: HASH, size: 3, now: 10 }, fileDecider.evolve(state, removed!))).toThrow("not found");
  });

  test("the same message's file recorded again decides nothing; another upload under its id is refused", () => {
    const record = { type: "RecordUpload" as const, file_id: "file_m", session_id: "s", user_id: "u", agent_id: "a", name: "n", content_type: "text/plain", size: 1, sha256: HASH, role: "attachment" as const, source: "message" as const, message_id: "msg_1", job_id: null, now: 1 };
    const state = fold(fileDecider, fileDecider.decide(record, fileDecider.initialState));
    expect(fileDecider.decide(record, state)).toEqual([]);
    expect(() => fileDecider.decide({ ...record, message_id: null, source: "multipart" }, state)).toThrow("already exists");
  });

  test("a blob is collected only while nothing references it, once", () => {
    let s = blobDecider.initialState;
    const apply = (c: Parameters<typeof blobDecider.decide>[0]) => {
      const events = blobDecider.decide(c, s);
      for (const e of events) s = blobDecider.evolve(s, e);
      return events.map((e) => e.type);
    };
    expect(apply({ type: "ReferenceBlob", sha256: HASH, file_id: "f1", size: 1 })).toEqual(["BlobReferenced"]);
    expect(apply({ type: "ReferenceBlob", sha256: HASH, file_id: "f1", size: 1 })).toEqual([]);
    expect(apply({ type: "ReferenceBlob", sha256: HASH, file_id: "f2", size: 1 })).toEqual(["BlobReferenced"]);
    expect(apply({ type: "CollectBlob", sha256: HASH })).toEqual([]);
    expect(apply({ type: "ReleaseBlob", sha256: HASH, file_id: "f1" })).toEqual(["BlobReleased"]);
    expect(apply({ type: "CollectBlob", sha256: HASH })).toEqual([]);
    expect(apply({ type: "ReleaseBlob", sha256: HASH, file_id: "f2" })).toEqual(["BlobReleased"]);
    expect(apply({ type: "ReleaseBlob", sha256: HASH, file_id: "f2" })).toEqual([]);
    expect(apply({ type: "CollectBlob", sha256: HASH })).toEqual(["BlobCollected"]);
    expect(apply({ type: "CollectBlob", sha256: HASH })).toEqual([]);
    expect(apply({ type: "ReferenceBlob", sha256: HASH, file_id: "f3", size: 1 })).toEqual(["BlobReferenced"]);
    expect(s).toEqual({ refs: ["f3"], collected: false });
  });
});
