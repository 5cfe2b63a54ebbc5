/** Picks the blob store the configuration names: local disk under DATA_DIR (default) or S3-compatible storage. */
import { join } from "node:path";
import type { Config } from "../config.ts";
import { LocalBlobStore } from "./local.ts";
import type { BlobStore } from "./port.ts";
import { S3BlobStore, s3StagingDir } from "./s3.ts";

export function createBlobStore(config: Pick<Config, "dataDir" | "files">): BlobStore {
  if (config.files.store === "s3") {
    const s3 = config.files.s3;
    return new S3BlobStore({
      endpoint: s3.endpoint, bucket: s3.bucket!, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, region: s3.region,
      prefix: s3.prefix, virtualHostedStyle: s3.virtualHostedStyle, stagingDir: s3StagingDir(config.dataDir),
    });
  }
  return new LocalBlobStore(join(config.dataDir, "blobs"));
}
