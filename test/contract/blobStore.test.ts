/**
 * The blob-store contract against the local-disk adapter and against the S3 adapter talking to a real
 * S3 server (s3rver, from npm) on 127.0.0.1, started here. What is stored is checked in the server's
 * own storage folder, not through the adapter.
 */
import { afterAll, beforeAll } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import S3rver from "s3rver";
import { LocalBlobStore } from "../../src/blobs/local.ts";
import { S3BlobStore } from "../../src/blobs/s3.ts";
import { blobStoreContract } from "./blobStore.contract.ts";

const root = mkdtempSync(join(tmpdir(), "agentry-blobs-"));
const local = new LocalBlobStore(join(root, "local"));
blobStoreContract("local", () => ({
  store: local,
  peek: async (sha256) => (existsSync(local.pathOf(sha256)) ? new Uint8Array(readFileSync(local.pathOf(sha256))) : null),
  stagingLeft: () => readdirSync(join(root, "local", "staging")).length,
}));

const s3Dir = join(root, "s3rver");
let s3server: S3rver;
let s3: S3BlobStore;
beforeAll(async () => {
  s3server = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory: s3Dir, configureBuckets: [{ name: "agentry-test" }] });
  const { port } = await s3server.run();
  s3 = new S3BlobStore({
    endpoint: `http://127.0.0.1:${port}`, bucket: "agentry-test", accessKeyId: "S3RVER", secretAccessKey: "S3RVER", region: "us-east-1",
    prefix: "agentry/", stagingDir: join(root, "s3-staging"),
  });
});
afterAll(async () => {
  await s3server?.close();
  rmSync(root, { recursive: true, force: true });
});

/** s3rver keeps each object as `<bucket>/<key>._S3rver_object` in its folder. */
const s3ObjectPath = (sha256: string) => join(s3Dir, "agentry-test", "agentry", "sha256", `${sha256}._S3rver_object`);
blobStoreContract("s3", () => ({
  store: s3,
  peek: async (sha256) => (existsSync(s3ObjectPath(sha256)) ? new Uint8Array(readFileSync(s3ObjectPath(sha256))) : null),
  stagingLeft: () => readdirSync(join(root, "s3-staging")).length,
}));
