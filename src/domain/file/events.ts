/**
 * Files' events (see src/core/eventContract.ts). A file's stream `file-<id>` records its upload and
 * removal; a blob's stream `blob-<sha256>` counts the files whose content it is, so shared content is
 * collected only once no file references it. Events name content by its SHA-256: they never carry bytes.
 */
import { Type } from "@sinclair/typebox";
import { eventCodec, type EventsOf } from "../../core/eventContract.ts";
import { Nullable } from "../shared/schemas.ts";

const Sha256 = Type.String({ pattern: "^[0-9a-f]{64}$" });

/** attachment: given to the agent (uploads, a message's files); artifact: made by the agent. */
export const FileRoleSchema = Type.Union([Type.Literal("attachment"), Type.Literal("artifact")]);
/** How the bytes arrived: a multipart upload, a signed upload URL, inside a message, or from a tool. */
export const FileSourceSchema = Type.Union([Type.Literal("multipart"), Type.Literal("signed_url"), Type.Literal("message"), Type.Literal("tool")]);

/** Where a file belongs: its session (if any), the end user it is for (if any), and the session's agent. */
const Owner = {
  file_id: Type.String(), session_id: Nullable(Type.String()), user_id: Nullable(Type.String()), agent_id: Nullable(Type.String()),
};

export const FILE_EVENTS = {
  /** A signed upload URL was issued: the file exists once bytes are PUT there before `expires_at` (ms). */
  UploadAuthorized: { version: 1, schema: Type.Object({
    ...Owner, name: Type.String(), content_type: Type.String(), size: Nullable(Type.Integer({ minimum: 0 })), expires_at: Type.Integer(),
  }) },
  FileUploaded: { version: 1, schema: Type.Object({
    ...Owner, name: Type.String(), content_type: Type.String(), size: Type.Integer({ minimum: 0 }), sha256: Sha256,
    role: FileRoleSchema, source: FileSourceSchema,
    /** The message whose inline attachment it was, or the job whose tool made it. */
    message_id: Nullable(Type.String()), job_id: Nullable(Type.String()),
  }) },
  /**
   * A file no session held became a session's (MUAPI registers an upload as one of its session's
   * assets): it is now removed with that session, as the session's own files are.
   */
  FileAssignedToSession: { version: 1, schema: Type.Object({ file_id: Type.String(), session_id: Type.String(), agent_id: Nullable(Type.String()) }) },
  /** `sha256` is null for a signed upload removed before its bytes arrived. */
  FileRemoved: { version: 1, schema: Type.Object({ file_id: Type.String(), sha256: Nullable(Sha256) }) },
};

export const BLOB_EVENTS = {
  BlobReferenced: { version: 1, schema: Type.Object({ sha256: Sha256, file_id: Type.String(), size: Type.Integer({ minimum: 0 }) }) },
  BlobReleased: { version: 1, schema: Type.Object({ sha256: Sha256, file_id: Type.String() }) },
  /** No file references the content any more: its bytes were removed from the blob store. */
  BlobCollected: { version: 1, schema: Type.Object({ sha256: Sha256 }) },
};

/** The key signed file URLs are signed with: generated once, sealed by the secret box (operator-wide). */
export const FILE_SIGNING_EVENTS = {
  FileSigningKeyCreated: { version: 1, schema: Type.Object({ key_id: Type.String(), sealed: Type.String() }) },
};

export type FileEvent = EventsOf<typeof FILE_EVENTS>;
export type BlobEvent = EventsOf<typeof BLOB_EVENTS>;
export const fileEvents = eventCodec(FILE_EVENTS);
export const blobEvents = eventCodec(BLOB_EVENTS);
export const fileSigningEvents = eventCodec(FILE_SIGNING_EVENTS);
