/**
 * The Magus-compatible surface, mounted at `/compat/magus`: Magus's one endpoint,
 * `POST /api/v1/messages`, over our sessions and turns. A Magus client changes only its base URL and
 * key (an Agentry API key, sent as `Authorization: Bearer`). The integration's agent is the key's
 * agent when the key is limited to agents (the first it names), else the app's default agent; the
 * conversation of a `session_id` is a session of ours (src/compat/shared/clientSessions.ts), readable
 * through `/v1` like any other. Choices where the doc is silent are recorded in docs/compat.md.
 */
import { Elysia } from "elysia";
import { Value } from "@sinclair/typebox/value";
import type { AppContext } from "../../app/context.ts";
import { agentOrDefault } from "../../app/defaultAgent.ts";
import { requireAgentAllowed } from "../../app/access.ts";
import { keyUserId } from "../../app/keyUsers.ts";
import { visibleJobState } from "../../app/jobReads.ts";
import { cancelJob, replySummary } from "../../app/turns.ts";
import { TimeoutError, ValidationError } from "../../core/errors.ts";
import { newResourceId } from "../../core/ids.ts";
import { jobStream } from "../../domain/streams.ts";
import { principalOf } from "../../http/auth.ts";
import { requestIdOf } from "../../http/requestGuard.ts";
import { TERMINAL_EVENTS } from "../../http/eventView.ts";
import { afterWrite, metaOf, stillAuthorized } from "../../http/routes/v1/common.ts";
import { acceptMessage, waitForEnd } from "../../http/routes/v1/sessions/service.ts";
import { admitCompat, type CompatAccess } from "../shared/compatAccess.ts";
import { sessionForClientId } from "../shared/clientSessions.ts";
import { translatedSse } from "../shared/translatedStream.ts";
import { DONE_FRAME, turnFailure, MAGUS_PREFIX, MagusError, MagusReply, MagusMessageBody, magusError, magusReply, magusStreamTranslator, type MagusMessage } from "./wire.ts";

export interface MagusDeps extends CompatAccess {
  ctx: AppContext;
  /** How long a synchronous request waits for the agent before 504 `timeout` (the turn is then cancelled). */
  timeoutMs: number;
}

/** The user a key's Magus conversations belong to: the end user of an end-user token, else one per key. */
const magusUser = (principal: { userId: string | null; keyId: string }): string => principal.userId ?? keyUserId("magus", principal.keyId);

/** The body, checked against the doc's request table: 400 `invalid_request` naming the first problem. */
function checkedBody(body: unknown): MagusMessage {
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw new ValidationError("The request body must be a JSON object", { param: "body" });
  const input = Value.Default(MagusMessageBody, structuredClone(body));
  const first = Value.Errors(MagusMessageBody, input).First();
  if (first) {
    const param = first.path.replace(/^\//, "").replaceAll("/", ".") || "body";
    throw new ValidationError(param === "content" && !("content" in (body as object)) ? "Missing content" : `Invalid field '${param}': ${first.message}`, { param });
  }
  return input as MagusMessage;
}

export const magusRoutes = (deps: MagusDeps) =>
  new Elysia({ name: "agentry.compat.magus", prefix: MAGUS_PREFIX, detail: { tags: ["Magus (compat)"] } })
    .model({ MagusReply, MagusError })
    .post("/api/v1/messages", async ({ request, body, set }) => {
      try {
        // The key first: a caller without a valid key learns nothing about its request.
        const ctx = await admitCompat(deps.ctx, deps, request, set.headers);
        const input = checkedBody(body);
        const principal = principalOf(request)!;
        const agentId = ctx.allowedAgents?.[0] ?? (await agentOrDefault(ctx, undefined, request.signal));
        requireAgentAllowed(ctx, agentId);
        const userId = magusUser(principal);
        const meta = metaOf(ctx, request, userId);
        // No session_id: a new conversation, whose generated id the answer carries.
        const clientId = input.session_id ?? `sess-${crypto.randomUUID()}`;
        const { row } = await sessionForClientId(ctx, { surface: "magus", clientId, agentId, userId }, meta, request.signal);
        const ids = { message_id: newResourceId("msg"), job_id: newResourceId("job") };
        // Magus has no "busy" answer: a message sent while the conversation's turn runs waits its turn.
        const accepted = await acceptMessage(ctx, request, row, {
          content: input.content, attachments: (input.attachments ?? []).map((a) => ({ ...a })), model: null, context: null, multitask: "enqueue",
        }, ids);
        await afterWrite(ctx, { set, request }, accepted.position);
        const jobId = accepted.job_id;
        if (input.stream) {
          const response = translatedSse(ctx, request, jobStream(jobId), {
            since: 0, endsAfter: TERMINAL_EVENTS, closing: DONE_FRAME, authorized: stillAuthorized(request),
            translate: magusStreamTranslator({ sessionId: clientId, conversationId: row.id, messageId: ids.message_id, verbosity: input.verbosity ?? "standard" }),
            // The next message, or a /v1 history read, finds this turn closed.
            beforeEnd: () => ctx.turns.turnSettled(jobId, meta, request.signal),
          });
          for (const [name, value] of Object.entries(set.headers)) response.headers.set(name, String(value));
          return response;
        }
        if (!(await waitForEnd(ctx, jobId, deps.timeoutMs, request.signal, meta))) {
          // The client is told the agent did not answer in time: the turn is stopped, not left running
          // into a conversation the client believes failed.
          if (!request.signal.aborted) await cancelJob(ctx, jobId, "timeout", meta).catch(() => undefined);
          throw new TimeoutError(`The agent did not respond within ${Math.round(deps.timeoutMs / 1000)} s`);
        }
        const state = await visibleJobState(ctx, jobId);
        if (state.status !== "completed") throw turnFailure(state);
        return magusReply({
          messageId: ids.message_id, sessionId: clientId, conversationId: row.id, reply: await replySummary(ctx, jobId),
          usage: state.usage, completedAt: Date.now(),
        });
      } catch (err) {
        const { status, body: envelope } = magusError(err, requestIdOf(request) ?? undefined);
        set.status = status;
        if (status >= 500 && status !== 502 && status !== 504) deps.ctx.logger.warn("magus request failed", { error: err as Error });
        return envelope;
      }
    }, {
      detail: {
        summary: "Send a message (Magus API integration)",
        description: "Magus's one endpoint: JSON reply (stream false) or an SSE stream of `data: {\"event\": …}` lines ending `data: [DONE]`. " +
          "`session_id` names the conversation (created on first use). Authorization: Bearer <Agentry API key>.",
        requestBody: { required: true, content: { "application/json": { schema: MagusMessageBody as never } } },
        responses: {
          200: { description: "The agent's reply (stream false), or text/event-stream (stream true)", content: { "application/json": { schema: { $ref: "#/components/schemas/MagusReply" } } } },
          400: { description: "invalid_request", content: { "application/json": { schema: { $ref: "#/components/schemas/MagusError" } } } },
          401: { description: "invalid_api_key" },
          403: { description: "integration_inactive or usage_limit_exceeded" },
          502: { description: "agent_error" },
          504: { description: "timeout" },
        },
      },
    });
