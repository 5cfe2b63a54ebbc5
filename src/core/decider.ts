/**
 * The shape every aggregate follows: `decide(command, state) → events`, `evolve(state, event) → state`.
 * Both are pure: time and new ids arrive inside commands, never from a clock or random source here.
 */
export interface DomainEvent<Type extends string = string, Data = unknown> {
  type: Type;
  data: Data;
}

export interface Decider<Command, Event extends DomainEvent, State> {
  initialState: State;
  evolve(state: State, event: Event): State;
  decide(command: Command, state: State): Event[];
}

/** Folds events into a state. */
export const fold = <Event extends DomainEvent, State>(
  decider: Pick<Decider<never, Event, State>, "initialState" | "evolve">,
  events: Iterable<Event>,
): State => {
  let state = decider.initialState;
  for (const e of events) state = decider.evolve(state, e);
  return state;
};

/** Exhaustiveness check for switches over discriminated unions. */
export function unreachable(value: never): never {
  throw new Error(`Unhandled case: ${JSON.stringify(value)}`);
}
