/**
 * Events are a versioned contract. Each event type has a TypeBox schema for its data, a version, and
 * upcasters that lift data written under older versions to the current shape. Writers stamp the
 * version into the event's metadata (`schema_version`); readers decode through `decode`, the one place
 * where stored JSON becomes a typed domain event: lifted to the current version, then checked.
 * Changing an event's shape means a new version and an upcaster here, never a cast at a reader.
 */
import type { Static, TSchema } from "@sinclair/typebox";
import { TypeCompiler, type TypeCheck } from "@sinclair/typebox/compiler";
import type { DomainEvent } from "./decider.ts";

export interface EventType<S extends TSchema = TSchema> {
  /** The current version; events are written with it. */
  version: number;
  schema: S;
  /** Upcasters by the version they lift from: `upcast[1]` turns version 1 data into version 2. */
  upcast?: Record<number, (data: any) => unknown>;
}

export type EventTypes = Record<string, EventType>;

/** The union of domain events a set of event types describes. */
export type EventsOf<T extends EventTypes> = { [K in keyof T & string]: DomainEvent<K, Static<T[K]["schema"]>> }[keyof T & string];

/** Stored data that does not fit its type's schema, or an event type no contract knows. */
export class EventContractError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EventContractError";
  }
}

/** Where the schema version travels with each event. */
export const SCHEMA_VERSION_KEY = "schema_version";

/**
 * Where business time travels: when the command that wrote the event was decided (ms since the
 * epoch), set by the writer, so it survives moving events to another store. The store's own
 * `created` is the fallback for events written before it was recorded.
 */
export const OCCURRED_AT_KEY = "occurred_at";

export const occurredAt = (e: { metadata: Record<string, unknown>; created: Date }): number => {
  const at = e.metadata[OCCURRED_AT_KEY];
  return typeof at === "number" ? at : e.created.getTime();
};

export interface EventCodec<E extends DomainEvent> {
  /** True when this codec knows the type. */
  knows(type: string): boolean;
  /** Lifts stored data to the current version and checks it. */
  decode(stored: { type: string; data: unknown; metadata?: Record<string, unknown> }): E;
  /** Checks an event about to be written; returns the metadata fields that describe its version. */
  encode(event: E): Record<string, unknown>;
}

export function eventCodec<T extends EventTypes>(types: T): EventCodec<EventsOf<T>> {
  const checks = new Map<string, TypeCheck<TSchema>>();
  for (const [type, def] of Object.entries(types)) checks.set(type, TypeCompiler.Compile(def.schema));
  const check = (type: string, data: unknown): void => {
    const checker = checks.get(type)!;
    if (!checker.Check(data)) {
      const first = checker.Errors(data).First();
      throw new EventContractError(`${type} does not match its schema: ${first ? `${first.path || "/"} ${first.message}` : "invalid"}`);
    }
  };
  return {
    knows: (type) => checks.has(type),
    decode(stored) {
      const def = types[stored.type];
      if (!def) throw new EventContractError(`Unknown event type ${stored.type}`);
      let version = Number(stored.metadata?.[SCHEMA_VERSION_KEY] ?? 1);
      let data = stored.data;
      if (version > def.version) throw new EventContractError(`${stored.type} v${version} is newer than this server reads (v${def.version})`);
      while (version < def.version) {
        const lift = def.upcast?.[version];
        if (!lift) throw new EventContractError(`${stored.type}: no upcaster from v${version}`);
        data = lift(data);
        version++;
      }
      check(stored.type, data);
      return { type: stored.type, data } as EventsOf<T>;
    },
    encode(event) {
      const def = types[event.type];
      if (!def) throw new EventContractError(`Unknown event type ${event.type}`);
      check(event.type, event.data);
      return { [SCHEMA_VERSION_KEY]: def.version };
    },
  };
}
