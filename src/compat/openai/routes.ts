/**
 * OpenAI's Responses and Conversations APIs at /compat/openai/v1, translated onto our sessions and
 * jobs (docs/compat.md): a response is a job, its id the job id; a conversation is a session, its id
 * the session id; a stream event's sequence_number is derived from its job event's cursor id
 * (./responses.ts: cursor * SEQ_PER_EVENT + i). The same key as
 * `/v1` (the SDK sends it as `Authorization: Bearer`), and errors in OpenAI's shape (./errors.ts).
 */
import { Elysia, t } from "elysia";
import { NotFoundError, ValidationError } from "../../core/errors.ts";
import { jobStream } from "../../domain/streams.ts";
import { findMessage, messagesOfJob, pageMessages, type MessageRow } from "../../../projections/messages/index.ts";
import { callerContext, metaOf, stillAuthorized, type V1Deps } from "../../http/routes/v1/common.ts";
import { deleteSession, requireSession, waitForEnd } from "../../http/routes/v1/sessions/service.ts";
import { translatedSse } from "../shared/translatedStream.ts";
import { OPENAI_PREFIX } from "./errors.ts";
import { cursorOfSequence, emptyFold, foldJobEvent, pauseEvent, RESPONSE_ENDS, SEQ_PER_EVENT, streamEventsOf, type JobFold } from "./responses.ts";
import { visibleJobState } from "../../app/jobReads.ts";
import type { RecordedEvent } from "../../eventstore/port.ts";
import { agentOfModel, cancelResponse, createResponse, DEFAULT_USER, foldResponse, readResponse, startConversation, type InputItem } from "./service.ts";
import type { AppContext } from "../../app/context.ts";

/** How long a create without `background` or `stream` waits for the end before answering in_progress. */
const SYNC_WAIT_MS = 300_000;
/** How long a cancel waits for a running response to end before answering. */
const CANCEL_WAIT_MS = 30_000;

/** Request fields of responses.create that do not change what an agent does here (docs/compat.md). */
const IGNORED_FIELDS = [
  "temperature", "top_p", "max_output_tokens", "reasoning", "text", "truncation", "parallel_tool_calls", "tool_choice", "include",
  "service_tier", "prompt_cache_key", "stream_options", "top_logprobs", "max_tool_calls", "prompt_cache_retention",
] as const;

const Id = t.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_.-]+$" });
const Metadata = t.Record(t.String({ maxLength: 64 }), t.String({ maxLength: 512 }), { maxProperties: 16 });

/**
 * What the schema cannot say of metadata (a record's key constraint is not enforced): keys of 1–64
 * characters, as OpenAI's; and a `user_id` must be one our users API can name (and erase).
 */
function checkedMetadata(metadata: Record<string, string> | null | undefined): Record<string, string> {
  for (const key of Object.keys(metadata ?? {})) {
    if (key.length === 0 || key.length > 64) throw new ValidationError("metadata keys are 1 to 64 characters", { param: "metadata" });
  }
  const userId = metadata?.user_id;
  if (userId !== undefined && (userId.length === 0 || userId.length > 200)) throw new ValidationError("metadata.user_id is 1 to 200 characters", { param: "metadata" });
  return metadata ?? {};
}

/**
 * A response's events as OpenAI stream events, those numbered after `startingAfter`. The job events
 * before the one that number came from only feed the fold (a resumed stream's snapshots show the whole
 * response); that one is translated again and its events up to the number dropped. The read starts no
 * later than the job's head, so a number past it (one never sent yet) waits for nothing that may not
 * come: the stream sends what is numbered after it, and ends with the job, like any other. It also ends
 * at a plan still waiting for approval (after its `mcp_approval_request` item): the client answers it
 * with a new create, whose stream carries on from there.
 */
async function responseStream(ctx: AppContext, request: Request, id: string, startingAfter: number): Promise<Response> {
  const { lastEventId, ended, fold: current } = await foldResponse(ctx, id);
  const awaiting = current.status === "awaiting_approval";
  const since = Math.min(Math.max(cursorOfSequence(startingAfter) - 1, 0), lastEventId);
  let fold: JobFold = emptyFold(id);
  if (since > 0) for await (const e of ctx.store.readStream(jobStream(id), { maxCount: since })) fold = foldJobEvent(fold, e);
  return translatedSse(ctx, request, jobStream(id), {
    // A response waiting on a plan has ended for now, as one that finished: a resume past its head closes at once.
    since, endsAfter: RESPONSE_ENDS, endedBefore: (ended || awaiting) && since >= lastEventId, authorized: stillAuthorized(request),
    pausesAt: async (e) => {
      if (e.type !== "PlanProposed" || !(await awaitsPlan(ctx, id, e))) return null;
      const event = pauseEvent(e, fold);
      return event.sequence_number > startingAfter ? `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n` : "";
    },
    translate: (e) => {
      const before = fold;
      fold = foldJobEvent(fold, e);
      let out = "";
      for (const event of streamEventsOf(e, before, fold)) {
        if (event.sequence_number > startingAfter) out += `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
      }
      return out;
    },
    // The turn is closed before the stream ends, so the client's next response in the conversation is not refused as busy.
    beforeEnd: async (last) => (RESPONSE_ENDS.has(last.type) ? ctx.turns.turnSettled(id, metaOf(ctx, request), request.signal) : undefined),
  });
}

/** Whether the job is still waiting on the plan this PlanProposed event proposed (not an earlier one, since decided). */
async function awaitsPlan(ctx: AppContext, id: string, e: RecordedEvent): Promise<boolean> {
  const state = await visibleJobState(ctx, id).catch(() => null);
  return state?.status === "awaiting_approval" && state.plan?.plan_id === (e.data as { plan_id?: unknown }).plan_id;
}

/** A message of the history as a conversation item. */
export const itemView = (r: MessageRow) => ({
  type: "message" as const, id: r.id, role: r.role, status: "completed" as const,
  content: [r.role === "user" ? { type: "input_text" as const, text: r.content } : { type: "output_text" as const, text: r.content, annotations: [] as unknown[] }],
});

const conversationView = (row: { id: string; created_at: number; metadata: string }) => ({
  id: row.id, object: "conversation" as const, created_at: Math.floor(row.created_at / 1000), metadata: JSON.parse(row.metadata) as Record<string, unknown>,
});

/** `?name=` read as a boolean the way the SDK sends it ("true"/"false"). */
const flag = (value: string | undefined, name: string): boolean => {
  if (value === undefined || value === "false") return false;
  if (value === "true") return true;
  throw new ValidationError(`${name} must be true or false`, { param: name });
};
const integer = (value: string | undefined, name: string, min: number, max: number): number | undefined => {
  if (value === undefined) return undefined;
  if (!/^[0-9]{1,15}$/.test(value) || Number(value) < min || Number(value) > max) throw new ValidationError(`${name} must be an integer from ${min} to ${max}`, { param: name });
  return Number(value);
};

export const openaiCompatRoutes = (deps: V1Deps) =>
  new Elysia({ name: "agentry.compat.openai", prefix: OPENAI_PREFIX, detail: { tags: ["OpenAI Responses (compat)"] } })
    .use(callerContext(deps))
    .post("/responses", async ({ ctx, body, request, set }) => {
      const http = { request, set };
      checkedMetadata(body.metadata);
      const { jobId, decided } = await createResponse(ctx, http, body as typeof body & { input: string | InputItem[] });
      // An approval answered: the response goes on, and a stream shows what follows the decision.
      if (body.stream) return responseStream(ctx, request, jobId, decided === undefined ? 0 : (decided + 1) * SEQ_PER_EVENT - 1);
      // A plan waiting for approval ends the wait too: the client answers it (mcp_approval_response).
      if (!body.background) await waitForEnd(ctx, jobId, SYNC_WAIT_MS, request.signal, metaOf(ctx, request), { orAwaitingApproval: true });
      return readResponse(ctx, jobId);
    }, {
      body: t.Object({
        model: t.Optional(t.String({ minLength: 1, maxLength: 100, description: "An agent id, or \"default\" for the app's default agent" })),
        input: t.Union([t.String({ minLength: 1, maxLength: 100_000 }), t.Array(t.Record(t.String(), t.Unknown()), { minItems: 1, maxItems: 200 })]),
        instructions: t.Optional(t.Nullable(t.String({ maxLength: 100_000 }))),
        conversation: t.Optional(t.Nullable(t.Union([Id, t.Object({ id: Id })]))),
        previous_response_id: t.Optional(t.Nullable(Id)),
        background: t.Optional(t.Nullable(t.Boolean())),
        stream: t.Optional(t.Nullable(t.Boolean())),
        store: t.Optional(t.Nullable(t.Boolean())),
        metadata: t.Optional(t.Nullable(Metadata)),
        user: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
        safety_identifier: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
        // Accepted so that existing clients run unchanged, and ignored: the agent's own settings apply.
        ...Object.fromEntries(IGNORED_FIELDS.map((name) => [name, t.Optional(t.Unknown())])),
        tools: t.Optional(t.Array(t.Unknown(), { maxItems: 0, description: "The agent's tools apply; tools sent here are refused" })),
      }),
      detail: {
        summary: "Create a response (responses.create)",
        description: "model names an agent; background answers at once (status queued), stream answers as SSE whose sequence_number is cursor id × 8 + i for the i-th event of a job event; otherwise waits for the end or for a plan waiting for approval, an mcp_approval_request output item (up to 300 s). An mcp_approval_response input item, with previous_response_id, approves or rejects that plan and continues the same response. conversation or previous_response_id continue a conversation (a session); neither starts one.",
      },
    })
    .get("/responses/:response_id", async ({ ctx, params, request }) => {
      const query = new URL(request.url).searchParams;
      if (flag(query.get("stream") ?? undefined, "stream")) {
        const since = integer(query.get("starting_after") ?? undefined, "starting_after", 0, Number.MAX_SAFE_INTEGER) ?? 0;
        return responseStream(ctx, request, params.response_id, since);
      }
      return readResponse(ctx, params.response_id);
    }, {
      params: t.Object({ response_id: Id }),
      detail: {
        summary: "Retrieve a response (responses.retrieve)",
        description: "stream=true answers as SSE; starting_after=N resumes after sequence number N with no gap and no duplicate, for as long as the event log keeps the job; the stream ends with the response, whatever N.",
        parameters: [
          { name: "stream", in: "query", required: false, schema: { type: "boolean" } },
          { name: "starting_after", in: "query", required: false, schema: { type: "integer", minimum: 0 } },
        ],
      },
    })
    .post("/responses/:response_id/cancel", ({ ctx, params, request, set }) => cancelResponse(ctx, { request, set }, params.response_id, CANCEL_WAIT_MS), {
      params: t.Object({ response_id: Id }),
      detail: {
        summary: "Cancel a response (responses.cancel)",
        description: "A running response is cancelled (answered once it has ended, up to 30 s); an ended one is answered as it is when it was created with background, else refused with 400.",
      },
    })
    .get("/responses/:response_id/input_items", async ({ ctx, params }) => {
      const { fold } = await foldResponse(ctx, params.response_id);
      const rows = fold.sessionId ? messagesOfJob(ctx.db, fold.sessionId, params.response_id).filter((r) => r.role === "user") : [];
      const data = rows.map(itemView);
      return { object: "list" as const, data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: false };
    }, { params: t.Object({ response_id: Id }), detail: { summary: "The input items of a response (responses.inputItems.list)" } })
    .post("/conversations", async ({ ctx, body, request, set }) => {
      if (body.items?.length) throw new ValidationError("Conversations are created empty here: send the first message as a response with this conversation", { param: "items" }, "unsupported");
      const metadata = checkedMetadata(body.metadata);
      // A session belongs to one agent: metadata.agent_id chooses it (the default agent otherwise).
      const agentId = await agentOfModel(ctx, metadata.agent_id, request.signal);
      const { id } = await startConversation(ctx, { request, set }, agentId, ctx.actingUser ?? metadata.user_id ?? DEFAULT_USER, metadata);
      return { id, object: "conversation" as const, created_at: Math.floor(Date.now() / 1000), metadata };
    }, {
      body: t.Object({ items: t.Optional(t.Nullable(t.Array(t.Unknown(), { maxItems: 20 }))), metadata: t.Optional(t.Nullable(Metadata)) }),
      detail: { summary: "Create a conversation (conversations.create)", description: "metadata.agent_id names the agent the conversation talks to (default: the app's default agent); initial items are refused." },
    })
    .get("/conversations/:conversation_id", ({ ctx, params }) => conversationView(requireSession(ctx, params.conversation_id)), {
      params: t.Object({ conversation_id: Id }), detail: { summary: "Retrieve a conversation (conversations.retrieve)" },
    })
    .delete("/conversations/:conversation_id", async ({ ctx, params, request, set }) => {
      await deleteSession(ctx, { set, request }, requireSession(ctx, params.conversation_id));
      return { id: params.conversation_id, object: "conversation.deleted" as const, deleted: true as const };
    }, { params: t.Object({ conversation_id: Id }), detail: { summary: "Delete a conversation (conversations.delete)" } })
    .get("/conversations/:conversation_id/items", ({ ctx, params, request }) => {
      requireSession(ctx, params.conversation_id);
      const query = new URL(request.url).searchParams;
      const limit = integer(query.get("limit") ?? undefined, "limit", 1, 100) ?? 20;
      const order = query.get("order") ?? "desc";
      if (order !== "asc" && order !== "desc") throw new ValidationError("order must be asc or desc", { param: "order" });
      const after = query.get("after");
      // A page is read by position (the item `after` names is found by id), so listing a long conversation page by page stays linear.
      const afterRow = after ? findMessage(ctx.db, params.conversation_id, after) : null;
      if (after && !afterRow) throw new ValidationError(`No item ${after} in this conversation`, { param: "after" });
      const { rows, hasMore } = pageMessages(ctx.db, params.conversation_id, { order, limit, ...(afterRow ? { afterSeq: afterRow.seq } : {}) });
      const data = rows.map(itemView);
      return { object: "list" as const, data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: hasMore };
    }, {
      params: t.Object({ conversation_id: Id }),
      detail: {
        summary: "List a conversation's items (conversations.items.list)", description: "Messages of the session's history as message items; order desc (default) or asc, after an item id.",
        parameters: [
          { name: "limit", in: "query", required: false, schema: { type: "integer", minimum: 1, maximum: 100, default: 20 } },
          { name: "order", in: "query", required: false, schema: { type: "string", enum: ["asc", "desc"] } },
          { name: "after", in: "query", required: false, schema: { type: "string" } },
        ],
      },
    })
    .get("/conversations/:conversation_id/items/:item_id", ({ ctx, params }) => {
      requireSession(ctx, params.conversation_id);
      const row = findMessage(ctx.db, params.conversation_id, params.item_id);
      if (!row) throw new NotFoundError(`No item ${params.item_id} in this conversation`, { param: "item_id" }, "item_not_found");
      return itemView(row);
    }, { params: t.Object({ conversation_id: Id, item_id: Id }), detail: { summary: "Retrieve a conversation item (conversations.items.retrieve)" } });
