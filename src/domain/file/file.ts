/**
 * File: one uploaded file's record. Stream `file-<id>`.
 *
 * A file is uploaded once (directly, or through a signed URL that was authorized first and works once,
 * until it expires) and removed once. Its bytes live in the blob store under their SHA-256; the blob
 * decider below counts which files reference them.
 */
import { ConflictError, ForbiddenError, NotFoundError, ValidationError } from "../../core/errors.ts";
import { unreachable, type Decider } from "../../core/decider.ts";
import type { BlobEvent, FileEvent } from "./events.ts";

export type { BlobEvent, FileEvent };
export type FileRole = "attachment" | "artifact";
export type FileSource = "multipart" | "signed_url" | "message" | "tool";

interface Owner {
  file_id: string;
  session_id: string | null;
  user_id: string | null;
  agent_id: string | null;
}

export type FileCommand =
  | ({ type: "AuthorizeUpload"; name: string; content_type: string; size: number | null; expires_at: number } & Owner)
  | ({
      type: "RecordUpload"; name: string; content_type: string; size: number; sha256: string; role: FileRole; source: FileSource;
      message_id: string | null; job_id: string | null;
      /** Business time, to check a signed upload's expiry. */
      now: number;
    } & Owner)
  /** The bytes of a signed upload arrived: recorded as the authorization said. */
  | { type: "CompleteSignedUpload"; sha256: string; size: number; now: number }
  /**
   * An uploaded file no session holds becomes `session_id`'s (removed with it); again for the same
   * session, nothing. Only a file of no user, or of the session's user (`user_id`), can be taken.
   */
  | { type: "AssignToSession"; session_id: string; agent_id: string | null; user_id: string }
  | { type: "RemoveFile" };

export interface FileState {
  status: "none" | "authorized" | "uploaded" | "removed";
  fileId: string | null;
  sessionId: string | null;
  userId: string | null;
  agentId: string | null;
  name: string;
  contentType: string;
  /** The size: declared (authorized, may be null) or actual (uploaded). */
  size: number | null;
  sha256: string | null;
  role: FileRole;
  source: FileSource | null;
  messageId: string | null;
  jobId: string | null;
  /** A signed upload's deadline (ms). */
  expiresAt: number | null;
}

export const fileDecider: Decider<FileCommand, FileEvent, FileState> = {
  initialState: {
    status: "none", fileId: null, sessionId: null, userId: null, agentId: null, name: "", contentType: "", size: null, sha256: null,
    role: "attachment", source: null, messageId: null, jobId: null, expiresAt: null,
  },

  evolve(state, event) {
    switch (event.type) {
      case "UploadAuthorized": {
        const d = event.data;
        return {
          ...state, status: "authorized", fileId: d.file_id, sessionId: d.session_id, userId: d.user_id, agentId: d.agent_id, name: d.name,
          contentType: d.content_type, size: d.size, expiresAt: d.expires_at, source: "signed_url",
        };
      }
      case "FileUploaded": {
        const d = event.data;
        return {
          ...state, status: "uploaded", fileId: d.file_id, sessionId: d.session_id, userId: d.user_id, agentId: d.agent_id, name: d.name,
          contentType: d.content_type, size: d.size, sha256: d.sha256, role: d.role, source: d.source, messageId: d.message_id, jobId: d.job_id,
        };
      }
      case "FileAssignedToSession":
        return { ...state, sessionId: event.data.session_id, agentId: event.data.agent_id };
      case "FileRemoved":
        return { ...state, status: "removed" };
      default:
        return unreachable(event);
    }
  },

  decide(command, state) {
    switch (command.type) {
      case "AuthorizeUpload": {
        if (state.status !== "none") throw new ConflictError("file_exists", `File ${command.file_id} already exists`);
        const { type: _, ...data } = command;
        return [{ type: "UploadAuthorized", data }];
      }
      case "RecordUpload": {
        if (state.status === "uploaded" && state.sha256 === command.sha256 && state.messageId === command.message_id && command.message_id !== null) {
          return []; // the same message's attachment, recorded by an earlier execution of the same request
        }
        if (state.status !== "none") throw new ConflictError("file_exists", `File ${command.file_id} already exists`);
        const { type: _, now: __, ...data } = command;
        return [{ type: "FileUploaded", data }];
      }
      case "CompleteSignedUpload":
        if (state.status === "uploaded") throw new ConflictError("upload_already_used", "This upload URL was already used; ask for a new one");
        if (state.status !== "authorized") throw new NotFoundError("Upload not found: it was removed, or never issued", { param: "file_id" }, "file_not_found");
        if (command.now > state.expiresAt!) throw new ForbiddenError("This upload URL has expired; ask for a new one", "signature_expired");
        if (state.size !== null && command.size !== state.size) {
          throw new ValidationError(`The upload was declared as ${state.size} bytes but ${command.size} arrived`, { param: "size", declared: state.size, received: command.size });
        }
        return [{ type: "FileUploaded", data: {
          file_id: state.fileId!, session_id: state.sessionId, user_id: state.userId, agent_id: state.agentId, name: state.name,
          content_type: state.contentType, size: command.size, sha256: command.sha256, role: "attachment", source: "signed_url",
          message_id: null, job_id: null,
        } }];
      case "AssignToSession":
        if (state.status !== "uploaded") throw new NotFoundError("File not found", { param: "file_id" }, "file_not_found");
        if (state.sessionId === command.session_id) return [];
        // One owner: a file another session holds goes when that session does.
        if (state.sessionId !== null) throw new ConflictError("file_in_another_session", "This file belongs to another session; upload it again for this one");
        if (state.userId !== null && state.userId !== command.user_id) throw new ConflictError("file_of_another_user", "This file belongs to another user");
        return [{ type: "FileAssignedToSession", data: { file_id: state.fileId!, session_id: command.session_id, agent_id: command.agent_id } }];
      case "RemoveFile":
        // A pending signed upload may be removed too: its URL then stops working.
        if (state.status !== "uploaded" && state.status !== "authorized") throw new NotFoundError("File not found", { param: "file_id" }, "file_not_found");
        return [{ type: "FileRemoved", data: { file_id: state.fileId!, sha256: state.sha256 } }];
      default:
        return unreachable(command);
    }
  },
};

/** A blob's references. Stream `blob-<sha256>`. */
export type BlobCommand =
  | { type: "ReferenceBlob"; sha256: string; file_id: string; size: number }
  | { type: "ReleaseBlob"; sha256: string; file_id: string }
  /** Decided after the bytes were parked: recorded only while nothing references them. */
  | { type: "CollectBlob"; sha256: string };

export interface BlobState {
  /** The files whose content this is, in the order they referenced it. */
  refs: string[];
  /** True once the bytes were removed and nothing has referenced them since. */
  collected: boolean;
}

export const blobDecider: Decider<BlobCommand, BlobEvent, BlobState> = {
  initialState: { refs: [], collected: false },

  evolve(state, event) {
    switch (event.type) {
      case "BlobReferenced":
        return { refs: [...state.refs, event.data.file_id], collected: false };
      case "BlobReleased":
        return { ...state, refs: state.refs.filter((f) => f !== event.data.file_id) };
      case "BlobCollected":
        return { ...state, collected: true };
      default:
        return unreachable(event);
    }
  },

  decide(command, state) {
    switch (command.type) {
      case "ReferenceBlob":
        return state.refs.includes(command.file_id) ? [] : [{ type: "BlobReferenced", data: { sha256: command.sha256, file_id: command.file_id, size: command.size } }];
      case "ReleaseBlob":
        return state.refs.includes(command.file_id) ? [{ type: "BlobReleased", data: { sha256: command.sha256, file_id: command.file_id } }] : [];
      case "CollectBlob":
        return state.refs.length === 0 && !state.collected ? [{ type: "BlobCollected", data: { sha256: command.sha256 } }] : [];
      default:
        return unreachable(command);
    }
  },
};
