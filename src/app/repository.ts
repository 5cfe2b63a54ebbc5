/**
 * Loads aggregates from their streams and runs commands through their deciders.
 *
 * A command is decided on the state at revision R and appended with expected revision R: if anything
 * else was appended meanwhile, the append fails and the command is decided again on the new state
 * (bounded retries). Folded states are cached per stream and brought up to date by reading only the
 * events after the cached revision, so loading a long-lived stream stays cheap; a command is first
 * decided on the cached state when nothing newer is known, without reading the store at all.
 */
import type { Decider, DomainEvent } from "../core/decider.ts";
import { OCCURRED_AT_KEY, type EventCodec } from "../core/eventContract.ts";
import { newEventId } from "../core/ids.ts";
import { StreamNotFoundError, WrongExpectedVersionError } from "../eventstore/errors.ts";
import type { EventMetadata, EventStore, RecordedEvent } from "../eventstore/port.ts";
import type { StreamTails } from "./streamTails.ts";

export interface Loaded<State> {
  state: State;
  /** Revision of the last event folded, or -1n for a stream with no events. */
  revision: bigint;
  /** The app the stream belongs to (its first event's `app_id`); null for a stream with no events. */
  appId: string | null;
}

export interface Handled<State, E extends DomainEvent = DomainEvent> {
  state: State;
  revision: bigint;
  /** The events this command appended (empty when the decider decided nothing). */
  appended: E[];
  /** Global position of the last appended event, for read-your-writes; null when nothing was appended. */
  position: bigint | null;
}

export interface CommandMetadata {
  appId: string;
  /** Who asked: `key:<id>`, `root:root`, `jwt:<subject>`, … recorded on every event it writes. */
  actor?: string;
  /** The end user the command was made for (by a server key, or by the user's own token). */
  attributedUserId?: string;
  correlationId?: string;
  causationId?: string;
  /** The id of the HTTP request that asked (its x-request-id), recorded as `request_id`. */
  requestId?: string;
  /** Business time of the command (ms since the epoch); now when not given. */
  now?: number;
}

/**
 * One command, or several to be decided in order and appended together (one write: all of them or
 * none), e.g. a step's last text and its usage.
 */
export type Commands<Command> = Command | readonly Command[];

export class Repository<Command, Event extends DomainEvent, State> {
  private readonly cache = new Map<string, Loaded<State>>();
  /** The last command under way per stream, which the next one on that stream waits for. */
  private readonly inFlight = new Map<string, Promise<void>>();

  constructor(
    private readonly store: EventStore,
    private readonly decider: Decider<Command, Event, State>,
    /** The stream's event contract: events are decoded (upcast, checked) on load and checked on append. */
    private readonly events: EventCodec<Event>,
    private readonly streamOf: (id: string) => string,
    /** The live tails of hot streams, which let `peek` answer without the store. */
    private readonly tails?: StreamTails,
    private readonly cacheSize = 5000,
  ) {}

  /**
   * The aggregate's state for reading (not for deciding): from memory when the live tail of its stream
   * shows nothing newer than the cached state, else loaded. May lag another process's append by the
   * live feed's delay; decisions use `handle`, which appends with the expected revision and reads the
   * store before it refuses.
   */
  async peek(id: string): Promise<Loaded<State>> {
    const stream = this.streamOf(id);
    const cached = this.cache.get(stream);
    if (cached && this.tails && this.tails.lastRevision(stream) === cached.revision) return cached;
    return this.load(id);
  }

  async load(id: string): Promise<Loaded<State>> {
    const stream = this.streamOf(id);
    const cached = this.cache.get(stream);
    let state = cached?.state ?? this.decider.initialState;
    let revision = cached?.revision ?? -1n;
    let appId = cached?.appId ?? null;
    let last: RecordedEvent | undefined;
    try {
      for await (const e of this.store.readStream(stream, { fromRevision: revision + 1n })) {
        state = this.decider.evolve(state, this.events.decode(e));
        revision = e.revision;
        appId ??= typeof e.metadata.app_id === "string" ? e.metadata.app_id : null;
        last = e;
      }
      // What was read ends at the stream's end: the tail can say from now on whether it moved.
      if (last) this.tails?.warm(stream, [last]);
      else if (revision >= 0n) this.tails?.warmRevision(stream, revision);
    } catch (err) {
      if (!(err instanceof StreamNotFoundError)) throw err;
      this.cache.delete(stream);
      return { state: this.decider.initialState, revision: -1n, appId: null };
    }
    this.remember(stream, { state, revision, appId });
    return { state, revision, appId };
  }

  /**
   * Decides `command` (or the command built from the current state) and appends the result.
   * Retries on a concurrent append; rule violations thrown by the decider propagate unchanged.
   */
  async handle(
    id: string,
    command: Commands<Command> | ((state: State) => Commands<Command>),
    metadata: CommandMetadata,
    attempts = 5,
  ): Promise<Handled<State, Event>> {
    // Commands on one stream from this process run one after another: decided concurrently, they
    // would all be decided on the same revision and all but one refused (appends made at the same
    // moment share a commit). Other processes are still kept apart by the expected revision.
    const stream = this.streamOf(id);
    const previous = this.inFlight.get(stream);
    const run = (previous ?? Promise.resolve()).then(() => this.decideAndAppend(id, stream, command, metadata, attempts));
    const settled: Promise<void> = run.then(() => {}, () => {});
    this.inFlight.set(stream, settled);
    void settled.then(() => {
      if (this.inFlight.get(stream) === settled) this.inFlight.delete(stream);
    });
    return run;
  }

  private async decideAndAppend(
    id: string, stream: string, command: Commands<Command> | ((state: State) => Commands<Command>), metadata: CommandMetadata, attempts: number,
  ): Promise<Handled<State, Event>> {
    for (let attempt = 1; ; attempt++) {
      // First on the cached state when nothing newer is known (usually this process made the stream's
      // last append): the expected revision catches an append it did not know of. A refusal, or a
      // decision to do nothing, is only ever given on state read from the store.
      const cached = attempt === 1 ? this.current(stream) : undefined;
      const { state, revision, appId } = cached ?? (await this.load(id));
      let events: Event[];
      try {
        // Building the command from the state may refuse too (a lost attempt, an invalid patch).
        const cmd = typeof command === "function" ? (command as (s: State) => Commands<Command>)(state) : command;
        events = this.decideAll(Array.isArray(cmd) ? (cmd as readonly Command[]) : [cmd as Command], state);
      } catch (err) {
        if (cached) continue;
        throw err;
      }
      if (events.length === 0) {
        if (cached) continue;
        return { state, revision, appended: [], position: null };
      }
      const meta: EventMetadata = {
        // A stream belongs to one app for good: the app it was started in, whoever appends later.
        app_id: appId ?? metadata.appId,
        [OCCURRED_AT_KEY]: metadata.now ?? Date.now(),
        ...(metadata.correlationId ? { correlationId: metadata.correlationId } : {}),
        ...(metadata.causationId ? { causationId: metadata.causationId } : {}),
        ...(metadata.actor ? { actor: metadata.actor } : {}),
        ...(metadata.attributedUserId ? { attributed_user_id: metadata.attributedUserId } : {}),
        ...(metadata.requestId ? { request_id: metadata.requestId } : {}),
      };
      const data = events.map((e) => ({ id: newEventId(), type: e.type, data: e.data, metadata: { ...meta, ...this.events.encode(e) } }));
      try {
        const result = await this.store.appendToStream(stream, data, { expectedRevision: revision < 0n ? "no_stream" : revision });
        let next = state;
        for (const e of events) next = this.decider.evolve(next, e);
        this.remember(stream, { state: next, revision: result.nextExpectedRevision, appId: appId ?? metadata.appId });
        return { state: next, revision: result.nextExpectedRevision, appended: events, position: result.position };
      } catch (err) {
        if (!(err instanceof WrongExpectedVersionError) || attempt >= attempts) throw err;
      }
    }
  }

  /** Commands decided one after another, each on the state the ones before it lead to: one append. */
  private decideAll(commands: readonly Command[], state: State): Event[] {
    const events: Event[] = [];
    for (const command of commands) {
      const decided = this.decider.decide(command, state);
      for (const e of decided) state = this.decider.evolve(state, e);
      events.push(...decided);
    }
    return events;
  }

  /** The cached state, when the live tail knows of nothing after it; else undefined. */
  private current(stream: string): Loaded<State> | undefined {
    const cached = this.cache.get(stream);
    if (!cached || !this.tails) return undefined;
    const known = this.tails.lastRevision(stream);
    return known !== undefined && known <= cached.revision ? cached : undefined;
  }

  /** Drops a cached state, e.g. after learning it is stale. */
  forget(id: string): void {
    this.cache.delete(this.streamOf(id));
  }

  private remember(stream: string, loaded: Loaded<State>): void {
    this.cache.delete(stream);
    this.cache.set(stream, loaded);
    if (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value!);
  }
}
