/**
 * Collecting content no file references, when a new file with the same bytes arrives at the worst
 * moments: right after the bytes were parked, and right after the collection was recorded. Neither
 * may lose the new file's bytes. Also the file and blob deciders' rules, without I/O.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalBlobStore } from "../../src/blobs/local.ts";
import { chunksOf } from "../../src/blobs/staging.ts";
import { recoverParked, releaseBlob, removeFile, storeFile } from "../../src/app/files.ts";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/core/logger.ts";
import { startServer } from "../../src/main.ts";
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

describe("a process that stopped mid-collection", () => {
  /**
   * The collector of A checked that nothing referenced the content, then B (the same bytes) was
   * uploaded (its commit found them stored), then the collector parked them, was refused the collection
   * (B references them) and stopped before putting them back: B is uploaded, its bytes only parked.
   */
  async function stoppedCollection(content: string): Promise<{ b: string; sha256: string }> {
    const sha256 = sha(content);
    const a = await store(content);
    await server.ctx.repos.files.handle(a, { type: "RemoveFile" }, meta());
    await server.ctx.repos.blobs.handle(sha256, { type: "ReleaseBlob", sha256, file_id: a }, meta());
    const b = await store(content);
    expect(await server.ctx.files!.blobs.park(sha256)).not.toBeNull();
    expect((await server.ctx.repos.blobs.handle(sha256, { type: "CollectBlob", sha256 }, meta())).appended).toEqual([]);
    expect(await server.ctx.files!.blobs.open(sha256)).toBeNull(); // the process stops here
    return { b, sha256 };
  }

  test("a read of a file whose bytes are parked puts them back", async () => {
    const content = `parked read ${crypto.randomUUID()}`;
    const { b, sha256 } = await stoppedCollection(content);
    const urls = server.ctx.files!.urls;
    const res = await fetch(urls.url(server.url, "download", b, 60).url);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(content);
    expect(await server.ctx.files!.blobs.parkedCopies(sha256)).toEqual([]);
  });

  test("recovery puts back what a file references or whose collection was never recorded, and drops what was collected", async () => {
    const blobs = server.ctx.files!.blobs;
    // Referenced: put back.
    const referenced = `recover referenced ${crypto.randomUUID()}`;
    await stoppedCollection(referenced);
    // Parked, the collection not yet recorded (the collector stopped before deciding): put back.
    const undecided = `recover undecided ${crypto.randomUUID()}`;
    const u = await store(undecided);
    await server.ctx.repos.files.handle(u, { type: "RemoveFile" }, meta());
    await server.ctx.repos.blobs.handle(sha(undecided), { type: "ReleaseBlob", sha256: sha(undecided), file_id: u }, meta());
    await blobs.park(sha(undecided));
    // Collected (recorded), the parked copy not yet purged: dropped.
    const collected = `recover collected ${crypto.randomUUID()}`;
    const c = await store(collected);
    await server.ctx.repos.files.handle(c, { type: "RemoveFile" }, meta());
    await server.ctx.repos.blobs.handle(sha(collected), { type: "ReleaseBlob", sha256: sha(collected), file_id: c }, meta());
    await blobs.park(sha(collected));
    await server.ctx.repos.blobs.handle(sha(collected), { type: "CollectBlob", sha256: sha(collected) }, meta());

    expect(await recoverParked(server.ctx)).toEqual({ restored: 2, purged: 1 });
    expect(await (await blobs.open(sha(referenced)))!.text()).toBe(referenced);
    expect(await (await blobs.open(sha(undecided)))!.text()).toBe(undecided);
    expect(await blobs.open(sha(collected))).toBeNull();
    expect(await blobs.parkedCopies()).toEqual([]);
  });

  test("after a restart the file reads: recovery runs at start-up", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "agentry-parked-"));
    const config = loadConfig({ PORT: "0", DATA_DIR: dataDir, API_KEY: TEST_KEY, SQLITE_SYNCHRONOUS: "normal" });
    try {
      const first = await startServer(config, silentLogger);
      const content = `restart ${crypto.randomUUID()}`;
      const m = () => ({ appId: first.ctx.appId, now: Date.now() });
      const put = async (fileId: string) => storeFile(first.ctx, {
        owner: { file_id: fileId, session_id: null, user_id: null, agent_id: null }, chunks: chunksOf(content),
        name: "f.txt", content_type: "text/plain", role: "attachment", source: "multipart",
      }, m());
      const a = newResourceId("file");
      const b = newResourceId("file");
      await put(a);
      await first.ctx.repos.files.handle(a, { type: "RemoveFile" }, m());
      await first.ctx.repos.blobs.handle(sha(content), { type: "ReleaseBlob", sha256: sha(content), file_id: a }, m());
      await put(b);
      await first.ctx.files!.blobs.park(sha(content));
      await first.ctx.repos.blobs.handle(sha(content), { type: "CollectBlob", sha256: sha(content) }, m());
      await first.shutdown("test");

      const second = await startServer(config, silentLogger);
      try {
        expect(readdirSync(join(dataDir, "blobs", "parked"))).toEqual([]);
        expect(await (await second.ctx.files!.blobs.open(sha(content)))!.text()).toBe(content);
        const got = await fetch(`${second.url}/v1/files/${b}`, { headers: { "x-api-key": TEST_KEY } });
        expect(await (await fetch(((await got.json()) as { download_url: string }).download_url)).text()).toBe(content);
      } finally {
        await second.shutdown("test");
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
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

  test("an uploaded file no session holds becomes a session's once: again for it, nothing; for another, refused", () => {
    const unowned = fold(fileDecider, [{ type: "UploadAuthorized", data: {
      file_id: "file_u", session_id: null, user_id: null, agent_id: null, name: "a.png", content_type: "image/png", size: null, expires_at: 1000,
    } }]);
    expect(() => fileDecider.decide({ type: "AssignToSession", session_id: "sess_1", agent_id: "agt", user_id: "u1" }, unowned)).toThrow("not found");
    const uploaded = fileDecider.evolve(unowned, fileDecider.decide({ type: "CompleteSignedUpload", sha256: HASH, size: 3, now: 10 }, unowned)[0]!);
    const [assigned] = fileDecider.decide({ type: "AssignToSession", session_id: "sess_1", agent_id: "agt", user_id: "u1" }, uploaded);
    expect(assigned).toEqual({ type: "FileAssignedToSession", data: { file_id: "file_u", session_id: "sess_1", agent_id: "agt" } });
    const owned = fileDecider.evolve(uploaded, assigned!);
    expect(owned).toMatchObject({ sessionId: "sess_1", agentId: "agt", status: "uploaded" });
    expect(fileDecider.decide({ type: "AssignToSession", session_id: "sess_1", agent_id: "agt", user_id: "u1" }, owned)).toEqual([]);
    expect(() => fileDecider.decide({ type: "AssignToSession", session_id: "sess_2", agent_id: "agt", user_id: "u1" }, owned)).toThrow("another session");
    // A file of one user is not another user's session's to take.
    const usersFile = fold(fileDecider, [{ type: "UploadAuthorized", data: {
      file_id: "file_v", session_id: null, user_id: "ann", agent_id: null, name: "a.png", content_type: "image/png", size: null, expires_at: 1000,
    } }]);
    const usersUpload = fileDecider.evolve(usersFile, fileDecider.decide({ type: "CompleteSignedUpload", sha256: HASH, size: 3, now: 10 }, usersFile)[0]!);
    expect(() => fileDecider.decide({ type: "AssignToSession", session_id: "sess_3", agent_id: "agt", user_id: "bob" }, usersUpload)).toThrow("another user");
    expect(fileDecider.decide({ type: "AssignToSession", session_id: "sess_3", agent_id: "agt", user_id: "ann" }, usersUpload)).toHaveLength(1);
    // A session's own file (an attachment) is no one else's either.
    expect(() => fileDecider.decide({ type: "AssignToSession", session_id: "sess_2", agent_id: "agt", user_id: "u1" }, authorized(1000))).toThrow("not found");
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
