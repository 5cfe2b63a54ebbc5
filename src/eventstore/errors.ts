/** Typed event-store errors. Adapters translate vendor errors into these at their boundary. */
import type { ExpectedRevision } from "./port.ts";

export class EventStoreError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** The stream's revision did not match the append's (or delete's) expected revision. */
export class WrongExpectedVersionError extends EventStoreError {
  constructor(
    readonly streamName: string,
    readonly expected: ExpectedRevision,
    /** The stream's actual last revision, or "no_stream". */
    readonly actual: bigint | "no_stream",
  ) {
    super("wrong_expected_version", `Stream ${streamName}: expected revision ${String(expected)}, actual ${String(actual)}`);
  }
}

export class StreamNotFoundError extends EventStoreError {
  constructor(readonly streamName: string) {
    super("stream_not_found", `Stream ${streamName} not found`);
  }
}

export class StreamDeletedError extends EventStoreError {
  constructor(readonly streamName: string) {
    super("stream_deleted", `Stream ${streamName} has been permanently deleted`);
  }
}

/** The store cannot be reached or refused to work (closed, disk error, server down). */
export class StoreUnavailableError extends EventStoreError {
  constructor(message: string, cause?: unknown) {
    super("store_unavailable", message);
    if (cause !== undefined) this.cause = cause;
  }
}

/** An argument the store cannot accept (bad stream name, non-UUID event id, unserialisable data). */
export class InvalidEventError extends EventStoreError {
  constructor(message: string) {
    super("invalid_event", message);
  }
}

/** An append bigger than the store takes in one write (EventStoreDB's MaxAppendSize: 1 MiB by default). */
export class AppendTooLargeError extends EventStoreError {
  constructor(
    readonly streamName: string,
    /** The most the store takes in one append, in bytes. */
    readonly maxBytes: number,
    /** The append's size, when the store that refused it said. */
    readonly sizeBytes?: number,
  ) {
    super("append_too_large", `An append to ${streamName}${sizeBytes === undefined ? "" : ` of ${sizeBytes} bytes`} is over the store's limit of ${maxBytes} bytes`);
  }
}

/** The store refused the credentials, or the user they name may not do what was asked. */
export class StoreAccessDeniedError extends EventStoreError {
  constructor(message: string, cause?: unknown) {
    super("store_access_denied", message);
    if (cause !== undefined) this.cause = cause;
  }
}
