/**
 * Session: a conversation with one agent. Stream `session-<id>`.
 *
 * The session decides the conversation's invariants: one turn in flight at a time (later messages are
 * refused as busy, or queued behind it when the caller asks), and asset labels `asset_N` numbered
 * without gaps or repeats. Both rest on appending with the revision the decision was made on.
 */
import { ConflictError, NotFoundError, ValidationError } from "../../core/errors.ts";
import { unreachable, type Decider } from "../../core/decider.ts";
import type { SessionEvent } from "./events.ts";
import type { SkillRun } from "../skill/skill.ts";
import type { Citation } from "../shared/citations.ts";
import type { ClientHistoryDigest } from "./clientHistory.ts";

export type { SessionEvent };

export type AssetKind = "image" | "video" | "audio" | "file";

export interface Attachment {
  type: "url" | "asset" | "file";
  url?: string;
  asset_label?: string;
  name?: string;
  content_type?: string;
  /** Base64 content of an inline file, in messages recorded before files were stored apart. */
  data?: string;
  /** A stored file, named by id and content hash (its name and type above). */
  file_id?: string;
  size?: number;
  sha256?: string;
}

export interface ReplySummary {
  content: string;
  result: unknown;
  tool_calls: Array<{ call_id: string; name: string; args: unknown; result: unknown; error: string | null }>;
  assets: string[];
  citations?: Citation[];
}

export type TurnOutcome = "completed" | "failed" | "cancelled";

export type SessionCommand =
  | { type: "StartSession"; session_id: string; agent_id: string; user_id: string; name: string; external_ref: string | null; metadata: Record<string, unknown> }
  | { type: "RenameSession"; name: string }
  | { type: "ArchiveSession" }
  | { type: "UnarchiveSession" }
  | { type: "DeleteSession" }
  | {
      type: "SendMessage"; message_id: string; job_id: string; content: string; attachments: Attachment[];
      model: string | null; context: Record<string, unknown> | null; multitask: "reject" | "enqueue";
      skill?: SkillRun;
      client_data?: Record<string, unknown>;
      /**
       * Files of the session that go to the agent with the first message to carry them: each is added to
       * this message's attachments unless an earlier message of the session carried it. Decided here, on
       * the revision the message is appended at, so of concurrent messages exactly one takes a file.
       */
      once_files?: Attachment[];
    }
  | { type: "EndTurn"; job_id: string; outcome: TurnOutcome; reply: ReplySummary | null; error: { code: string; message: string } | null }
  /** A URL or (`file_id`) a file of the app: exactly one of the two. */
  | { type: "RegisterAsset"; asset_id: string; url: string | null; file_id?: string | null; kind: AssetKind; source_tool: string; prompt: string | null; model: string | null; job_id: string | null }
  | { type: "SummarizeHistory"; summary: string; through_message_id: string; turns: number; job_id: string }
  | ({ type: "SaveClientHistory" } & ClientHistoryDigest);

export interface SessionState {
  status: "none" | "active" | "deleted";
  id: string | null;
  agentId: string | null;
  userId: string | null;
  name: string;
  externalRef: string | null;
  metadata: Record<string, unknown>;
  archived: boolean;
  /** Job ids of turns not yet ended, oldest first; the head is the turn in flight. */
  turns: Array<{ job_id: string; message_id: string }>;
  assetCount: number;
  /** Ids of the stored files the session's messages carried (see SendMessage's `once_files`). */
  carriedFiles: string[];
}

export const sessionDecider: Decider<SessionCommand, SessionEvent, SessionState> = {
  initialState: { status: "none", id: null, agentId: null, userId: null, name: "", externalRef: null, metadata: {}, archived: false, turns: [], assetCount: 0, carriedFiles: [] },

  evolve(state, event) {
    switch (event.type) {
      case "SessionStarted":
        return {
          ...state, status: "active", id: event.data.session_id, agentId: event.data.agent_id, userId: event.data.user_id, name: event.data.name,
          externalRef: event.data.external_ref, metadata: event.data.metadata,
        };
      case "SessionRenamed":
        return { ...state, name: event.data.name };
      case "SessionArchived":
        return { ...state, archived: true };
      case "SessionUnarchived":
        return { ...state, archived: false };
      case "SessionDeleted":
        return { ...state, status: "deleted" };
      case "MessageSent": {
        const files = event.data.attachments.flatMap((a) => (a.type === "file" && a.file_id && !state.carriedFiles.includes(a.file_id) ? [a.file_id] : []));
        return {
          ...state, turns: [...state.turns, { job_id: event.data.job_id, message_id: event.data.message_id }],
          ...(files.length ? { carriedFiles: [...state.carriedFiles, ...new Set(files)] } : {}),
        };
      }
      case "TurnEnded":
        return { ...state, turns: state.turns.filter((t) => t.job_id !== event.data.job_id) };
      case "AssetRegistered":
        return { ...state, assetCount: state.assetCount + 1 };
      case "HistorySummarized":
        return state; // the conversation's content is the runner's concern (src/jobs/runner/conversation.ts)
      case "ClientHistorySaved":
        return state; // a record for auditors: the conversation is what the session's own events say
      default:
        return unreachable(event);
    }
  },

  decide(command, state) {
    switch (command.type) {
      case "StartSession":
        if (state.status !== "none") throw new ConflictError("session_exists", `Session ${command.session_id} already exists`);
        return [{ type: "SessionStarted", data: {
          session_id: command.session_id, agent_id: command.agent_id, user_id: command.user_id, name: command.name,
          external_ref: command.external_ref, metadata: command.metadata,
        } }];
      case "RenameSession":
        requireActive(state);
        return command.name === state.name ? [] : [{ type: "SessionRenamed", data: { name: command.name } }];
      case "ArchiveSession":
        requireActive(state);
        return state.archived ? [] : [{ type: "SessionArchived", data: {} }];
      case "UnarchiveSession":
        requireActive(state);
        return state.archived ? [{ type: "SessionUnarchived", data: {} }] : [];
      case "DeleteSession":
        requireActive(state);
        return [{ type: "SessionDeleted", data: {} }];
      case "SendMessage": {
        requireActive(state);
        if (state.archived) throw new ConflictError("session_archived", "The session is archived; unarchive it to send messages");
        const active = state.turns[0];
        if (active && command.multitask !== "enqueue") {
          throw new ConflictError("session_busy", "A turn is already in flight in this session", {
            active_job_id: active.job_id,
            hint: 'Poll the active job, or resend with "multitask": "enqueue" to run after it',
          });
        }
        const given = new Set(command.attachments.flatMap((a) => (a.file_id ? [a.file_id] : [])));
        const once = (command.once_files ?? []).filter((a) => {
          if (!a.file_id || given.has(a.file_id) || state.carriedFiles.includes(a.file_id)) return false;
          given.add(a.file_id);
          return true;
        });
        return [{ type: "MessageSent", data: {
          message_id: command.message_id, job_id: command.job_id, content: command.content, attachments: [...command.attachments, ...once],
          model: command.model, context: command.context, queued: active !== undefined, ...(command.skill ? { skill: command.skill } : {}),
          ...(command.client_data ? { client_data: command.client_data } : {}),
        } }];
      }
      case "EndTurn": {
        // Idempotent: ending a turn that already ended (or never began here) decides nothing.
        const turn = state.turns.find((t) => t.job_id === command.job_id);
        if (!turn) return [];
        return [{ type: "TurnEnded", data: {
          job_id: command.job_id, message_id: turn.message_id, outcome: command.outcome, reply: command.reply, error: command.error,
        } }];
      }
      case "RegisterAsset":
        requireActive(state);
        if ((command.url === null) === ((command.file_id ?? null) === null)) throw new ValidationError("An asset is a url or a file_id, exactly one of the two", { param: "url" });
        return [{ type: "AssetRegistered", data: {
          asset_label: `asset_${state.assetCount + 1}`, url: command.url, kind: command.kind, source_tool: command.source_tool,
          prompt: command.prompt, model: command.model, job_id: command.job_id, asset_id: command.asset_id, file_id: command.file_id ?? null,
        } }];
      case "SummarizeHistory":
        requireActive(state);
        return [{ type: "HistorySummarized", data: {
          summary: command.summary, through_message_id: command.through_message_id, turns: command.turns, job_id: command.job_id,
        } }];
      case "SaveClientHistory":
        requireActive(state);
        return [{ type: "ClientHistorySaved", data: { count: command.count, sha256: command.sha256, bytes: command.bytes } }];
      default:
        return unreachable(command);
    }
  },
};

function requireActive(state: SessionState): void {
  if (state.status !== "active") throw new NotFoundError("Session not found", { param: "session_id" }, "session_not_found");
}
