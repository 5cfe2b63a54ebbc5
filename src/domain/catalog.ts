/**
 * Every domain event type, for readers that see more than one stream's events (projections, the
 * public event view, auditors). Aggregates' own repositories use their stream's contract.
 */
import { eventCodec, type EventsOf } from "../core/eventContract.ts";
import { AGENT_EVENTS } from "./agent/events.ts";
import { APP_EVENTS } from "./app/events.ts";
import { BUDGET_EVENTS } from "./billing/budget.ts";
import { CREDENTIAL_EVENTS } from "./credential/events.ts";
import { ERASURE_EVENTS } from "./erasure/events.ts";
import { BLOB_EVENTS, FILE_EVENTS, FILE_SIGNING_EVENTS } from "./file/events.ts";
import { IDEMPOTENCY_EVENTS } from "./idempotency/idempotency.ts";
import { JOB_EVENTS } from "./job/events.ts";
import { KEYRING_EVENTS } from "./keyring/events.ts";
import { MEMORY_EVENTS } from "./memory/events.ts";
import { END_USER_SIGNING_EVENTS, OPERATOR_EVENTS } from "./operator/events.ts";
import { SESSION_EVENTS } from "./session/events.ts";
import { SKILL_EVENTS } from "./skill/events.ts";

export const DOMAIN_EVENTS = { ...AGENT_EVENTS, ...SESSION_EVENTS, ...JOB_EVENTS, ...FILE_EVENTS, ...BLOB_EVENTS, ...FILE_SIGNING_EVENTS, ...IDEMPOTENCY_EVENTS, ...APP_EVENTS, ...KEYRING_EVENTS, ...OPERATOR_EVENTS, ...END_USER_SIGNING_EVENTS, ...CREDENTIAL_EVENTS, ...BUDGET_EVENTS, ...MEMORY_EVENTS, ...SKILL_EVENTS, ...ERASURE_EVENTS };
export type AnyDomainEvent = EventsOf<typeof DOMAIN_EVENTS>;
export const domainEvents = eventCodec(DOMAIN_EVENTS);
