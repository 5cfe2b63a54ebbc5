/**
 * A memory entry: something worth remembering about an end user, kept by their app (MUXI's memory,
 * Magus's memory). Stream `memory-<id>`. Added once, removed at most once; a removed entry cannot be
 * added again under the same id. Pure: the id, the owner and the content arrive in the command.
 */
import { NotFoundError, ValidationError } from "../../core/errors.ts";
import { unreachable, type Decider } from "../../core/decider.ts";
import type { MemoryEvent } from "./events.ts";

export type { MemoryEvent };

export type MemoryAdded = Extract<MemoryEvent, { type: "MemoryAdded" }>["data"];

export interface MemoryState {
  status: "none" | "active" | "removed";
  entry: MemoryAdded | null;
}

/** The most characters an entry holds, and the most bytes its metadata takes as JSON. */
export const MAX_MEMORY_CHARS = 8_000;
export const MAX_MEMORY_METADATA_BYTES = 16_384;

/** 400 naming the field unless the content has something in it and both fit. */
export function checkMemoryEntry(content: string, metadata: Record<string, unknown> | undefined): void {
  if (content.trim() === "") throw new ValidationError("content must not be blank", { param: "content" });
  if (content.length > MAX_MEMORY_CHARS) throw new ValidationError(`content holds at most ${MAX_MEMORY_CHARS} characters`, { param: "content" });
  if (metadata !== undefined && Buffer.byteLength(JSON.stringify(metadata)) > MAX_MEMORY_METADATA_BYTES) {
    throw new ValidationError(`metadata takes at most ${MAX_MEMORY_METADATA_BYTES} bytes as JSON`, { param: "metadata" });
  }
}

export type MemoryCommand =
  | { type: "AddMemory"; entry: MemoryAdded }
  | { type: "RemoveMemory" };

export const memoryDecider: Decider<MemoryCommand, MemoryEvent, MemoryState> = {
  initialState: { status: "none", entry: null },

  evolve(state, event) {
    switch (event.type) {
      case "MemoryAdded":
        return { status: "active", entry: event.data };
      case "MemoryRemoved":
        return { ...state, status: "removed" };
      default:
        return unreachable(event);
    }
  },

  decide(command, state) {
    switch (command.type) {
      case "AddMemory":
        // The same entry again (a retried request that had committed) decides nothing.
        if (state.status === "active" && state.entry?.memory_id === command.entry.memory_id) return [];
        if (state.status !== "none") throw new NotFoundError("Memory entry not found", { param: "memory_id" }, "memory_not_found");
        checkMemoryEntry(command.entry.content, command.entry.metadata);
        return [{ type: "MemoryAdded", data: command.entry }];
      case "RemoveMemory": {
        if (state.status !== "active" || !state.entry) throw new NotFoundError("Memory entry not found", { param: "memory_id" }, "memory_not_found");
        const { memory_id, app_id, user_id } = state.entry;
        return [{ type: "MemoryRemoved", data: { memory_id, app_id, user_id } }];
      }
      default:
        return unreachable(command);
    }
  },
};
