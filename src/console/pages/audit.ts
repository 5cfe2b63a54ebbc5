/**
 * The auditors' screens: find a session, its merged timeline (every event with its metadata, data on
 * demand), the conversation as of any event, and the hash-chain check of its streams. Pure renderers of
 * what the management API answered.
 */
import { csrfField, html, href, pretty, type SafeHtml } from "../html.ts";
import { when } from "./layout.ts";

export interface AppSummary { id: string; name: string; status: string }
export interface SessionSummary {
  id: string; user_id: string; name: string; external_ref: string | null; agent_id: string; status: string;
  message_count: number; archived: boolean; deleted: boolean; created_at: string; last_activity_at: string;
}
export interface AuditEvent {
  stream: string; revision: number; position: string; id: string; type: string; schema_version: number; occurred_at: string;
  recorded_at: string; app_id: string | null; actor: string | null; attributed_user_id: string | null; correlation_id: string | null;
  causation_id: string | null; request_id: string | null; data: unknown; metadata: Record<string, unknown>;
}

export type SearchField = "session_id" | "user_id" | "external_ref";
export const SEARCH_FIELDS: Array<[SearchField, string]> = [["session_id", "Session id"], ["user_id", "User id"], ["external_ref", "External ref"]];

export interface Scope { app: string; mode: "live" | "test" }

const modeQuery = (scope: Scope) => (scope.mode === "test" ? "test" : undefined);
const sessionHref = (scope: Scope, id: string, extra: Record<string, string | number | undefined> = {}) =>
  href(["apps", scope.app, "sessions", id], { mode: modeQuery(scope), ...extra });

export function searchPage(input: {
  apps: AppSummary[]; scope: Scope; field: SearchField; q: string;
  results: { data: SessionSummary[]; next_cursor: string | null } | null; problem: SafeHtml | null;
}): SafeHtml {
  const { apps, scope, field, q, results } = input;
  const appKnown = apps.some((a) => a.id === scope.app);
  return html`<h1>Sessions</h1>
<form method="get" action="/console/sessions" class="toolbar" role="search">
  <label>App <select name="app">${appKnown ? "" : html`<option value="${scope.app}" selected>${scope.app}</option>`}${apps.map((a) => html`<option value="${a.id}"${a.id === scope.app ? html` selected` : ""}>${a.name} (${a.id})</option>`)}</select></label>
  <label>Data <select name="mode"><option value="live">live</option><option value="test"${scope.mode === "test" ? html` selected` : ""}>test</option></select></label>
  <label>Find by <select name="by">${SEARCH_FIELDS.map(([key, label]) => html`<option value="${key}"${key === field ? html` selected` : ""}>${label}</option>`)}</select></label>
  <label class="grow">Value <input type="search" name="q" value="${q}" placeholder="sess_…, a user id or an external ref" spellcheck="false"></label>
  <button type="submit">Find</button>
</form>
${input.problem}
${results ? html`<p class="muted">${q ? html`Sessions of <code>${scope.app}</code> whose ${SEARCH_FIELDS.find(([k]) => k === field)![1].toLowerCase()} is <code>${q}</code>` : html`The newest sessions of <code>${scope.app}</code>`}${scope.mode === "test" ? " (test data)" : ""}.</p>
${results.data.length === 0 ? html`<p class="empty">No session found.${field === "session_id" && q ? html` The read model may not have it yet: <a href="${sessionHref(scope, q)}">open the timeline of ${q}</a> from the event store.` : ""}</p>` : html`<table class="grid" id="sessions">
  <thead><tr><th>Session</th><th>User</th><th>Name</th><th>External ref</th><th>Messages</th><th>Status</th><th>Last activity</th></tr></thead>
  <tbody>${results.data.map((s) => html`<tr data-session="${s.id}">
    <td><a href="${sessionHref(scope, s.id)}"><code>${s.id}</code></a></td><td>${s.user_id}</td><td>${s.name}</td><td>${s.external_ref ?? "—"}</td>
    <td class="num">${s.message_count}</td><td>${s.deleted ? html`<span class="tag bad">deleted</span>` : html`<span class="tag">${s.status}</span>`}${s.archived ? html` <span class="tag">archived</span>` : ""}</td><td>${when(s.last_activity_at)}</td>
  </tr>`)}</tbody></table>`}
${results.next_cursor ? html`<p><a class="button" href="${href(["sessions"], { app: scope.app, mode: modeQuery(scope), by: field, q, cursor: results.next_cursor })}">More sessions →</a></p>` : ""}` : ""}`;
}

function sessionHeader(scope: Scope, sessionId: string, session: SessionSummary | null, current: "timeline" | "as-of" | "verify", csrf: string): SafeHtml {
  return html`<p class="crumbs"><a href="${href(["sessions"], { app: scope.app, mode: modeQuery(scope) })}">Sessions</a> / <code>${scope.app}</code>${scope.mode === "test" ? " (test)" : ""} / <code>${sessionId}</code></p>
<div class="heading">
  <h1>${session ? session.name || sessionId : sessionId}</h1>
  <div class="actions">
    ${current !== "timeline" ? html`<a class="button" href="${sessionHref(scope, sessionId)}">Timeline</a>` : ""}
    <a class="button" href="${href(["apps", scope.app, "sessions", sessionId, "as-of"], { mode: modeQuery(scope) })}">Conversation now</a>
    <form method="post" action="${href(["apps", scope.app, "sessions", sessionId, "verify"])}">${csrfField(csrf)}<input type="hidden" name="mode" value="${scope.mode}"><button type="submit" id="verify">Verify hash chains</button></form>
  </div>
</div>
${session ? html`<dl class="facts">
  <div><dt>User</dt><dd>${session.user_id}</dd></div><div><dt>Agent</dt><dd><code>${session.agent_id}</code></dd></div>
  <div><dt>External ref</dt><dd>${session.external_ref ?? "—"}</dd></div><div><dt>Messages</dt><dd>${session.message_count}</dd></div>
  <div><dt>Status</dt><dd>${session.deleted ? html`<span class="tag bad">deleted</span>` : session.status}</dd></div><div><dt>Created</dt><dd>${when(session.created_at)}</dd></div>
</dl>` : ""}`;
}

const orDash = (v: string | null) => (v === null ? html`<span class="muted">—</span>` : html`<code>${v}</code>`);

export function timelinePage(input: {
  scope: Scope; sessionId: string; session: SessionSummary | null; events: AuditEvent[]; nextCursor: string | null; offset: number; problem: SafeHtml | null; csrf: string;
}): SafeHtml {
  const { scope, sessionId, events, offset } = input;
  return html`${sessionHeader(scope, sessionId, input.session, "timeline", input.csrf)}
<h2>Timeline</h2>
<p class="muted">The session's stream and its jobs' streams, merged in commit order, each event as stored. Pick an event to see the conversation as it stood just after it.</p>
${input.problem}
${events.length === 0 && !input.problem ? html`<p class="empty">No events${offset > 0 ? " after these" : ""}.</p>` : ""}
<ol class="timeline" start="${offset + 1}">
${events.map((e, i) => html`<li class="event" id="event-${offset + i + 1}" data-position="${e.position}" data-type="${e.type}">
  <div class="event-head">
    <span class="seq">#${offset + i + 1}</span>
    <strong class="type">${e.type}</strong>
    <code class="stream" title="stream @ revision">${e.stream}@${e.revision}</code>
    <time datetime="${e.occurred_at}">${when(e.occurred_at)}</time>
    <a class="as-of" href="${href(["apps", scope.app, "sessions", sessionId, "as-of"], { mode: modeQuery(scope), at: e.position, n: offset + i + 1 })}">As of this event →</a>
  </div>
  <dl class="meta">
    <div><dt>actor</dt><dd>${orDash(e.actor)}</dd></div>
    <div><dt>user</dt><dd>${orDash(e.attributed_user_id)}</dd></div>
    <div><dt>position</dt><dd><code>${e.position}</code></dd></div>
    <div><dt>correlation</dt><dd>${orDash(e.correlation_id)}</dd></div>
    <div><dt>causation</dt><dd>${orDash(e.causation_id)}</dd></div>
    <div><dt>request</dt><dd>${orDash(e.request_id)}</dd></div>
    <div><dt>recorded</dt><dd>${when(e.recorded_at)}</dd></div>
    <div><dt>schema</dt><dd>v${e.schema_version}</dd></div>
  </dl>
  <details><summary>Data</summary><pre>${pretty(e.data)}</pre></details>
  <details><summary>Metadata</summary><pre>${pretty(e.metadata)}</pre></details>
</li>`)}
</ol>
<nav class="pager">
  ${offset > 0 ? html`<a class="button" href="${sessionHref(scope, sessionId)}">← First events</a>` : ""}
  ${input.nextCursor ? html`<a class="button" id="next-page" href="${sessionHref(scope, sessionId, { cursor: input.nextCursor, n: offset + events.length })}">Later events →</a>` : ""}
</nav>`;
}

interface Message { id: string; role: string; content: string | null; status?: string; created_at: string; error?: unknown; assets?: unknown[] }
interface Job { id: string; status: string; attempts: number; created_at: string; completed_at: string | null }
interface Asset { asset_label: string | null; kind: string; url: string | null; created_at: string }
export interface SessionState {
  as_of: { position: string | null; occurred_at: string | null };
  deleted: boolean; session: SessionSummary | null; messages: Message[]; assets: Asset[]; jobs: Job[];
  prompts: Array<{ job_id: string; attempt: number; agent_version: number | null; system_prompt_sha256: string | null; prompt_overridden: boolean | null; started_at: string }>;
}

export function asOfPage(input: {
  scope: Scope; sessionId: string; at: string | null; n: number | null; state: SessionState | null;
  next: { position: string; type: string } | null; problem: SafeHtml | null; csrf: string;
}): SafeHtml {
  const { scope, sessionId, state, n } = input;
  const asOf = (at: string, seq: number | null) => href(["apps", scope.app, "sessions", sessionId, "as-of"], { mode: modeQuery(scope), at, n: seq ?? undefined });
  return html`${sessionHeader(scope, sessionId, state?.session ? { ...state.session, deleted: state.deleted } : null, "as-of", input.csrf)}
<h2>Conversation ${input.at === null ? "now" : n !== null ? html`as of event #${n} <small class="muted">(position <code>${input.at}</code>)</small>` : html`as of <code>${input.at}</code>`}</h2>
${input.problem}
${state ? html`<p class="muted" id="as-of">Rebuilt from the event store up to position <code>${state.as_of.position ?? "—"}</code> (${when(state.as_of.occurred_at)}), without read models.${state.deleted ? " The session had been deleted by then." : ""}</p>
<nav class="pager">
  ${n !== null ? html`<a class="button" href="${sessionHref(scope, sessionId, {})}#event-${n}">← Back to the timeline</a>` : ""}
  ${input.next ? html`<a class="button" id="next-event" href="${asOf(input.next.position, n === null ? null : n + 1)}">Next event: ${input.next.type} →</a>` : input.at !== null ? html`<span class="muted">This is the session's last event.</span>` : ""}
</nav>
${state.session === null ? html`<p class="empty">The session had not started by then.</p>` : ""}
<section class="conversation" aria-label="Conversation">
${state.messages.length === 0 ? html`<p class="empty">No messages yet.</p>` : state.messages.map((m) => html`<article class="message ${m.role}">
  <header><strong>${m.role}</strong>${m.status && m.status !== "completed" ? html` <span class="tag${m.status === "failed" ? " bad" : ""}">${m.status}</span>` : ""} <time>${when(m.created_at)}</time></header>
  <p>${m.content ?? ""}</p>
  ${m.error ? html`<details><summary>Error</summary><pre>${pretty(m.error)}</pre></details>` : ""}
</article>`)}
</section>
<div class="columns">
  <section><h3>Jobs</h3>${state.jobs.length === 0 ? html`<p class="empty">None.</p>` : html`<table class="grid"><thead><tr><th>Job</th><th>Status</th><th>Attempts</th><th>Queued</th></tr></thead>
    <tbody>${state.jobs.map((j) => html`<tr><td><code>${j.id}</code></td><td><span class="tag">${j.status}</span></td><td class="num">${j.attempts}</td><td>${when(j.created_at)}</td></tr>`)}</tbody></table>`}</section>
  <section><h3>Assets</h3>${state.assets.length === 0 ? html`<p class="empty">None.</p>` : html`<table class="grid"><thead><tr><th>Label</th><th>Kind</th><th>URL</th></tr></thead>
    <tbody>${state.assets.map((a) => html`<tr><td>${a.asset_label ?? "—"}</td><td>${a.kind}</td><td class="wrap">${a.url ?? "—"}</td></tr>`)}</tbody></table>`}</section>
</div>
${state.prompts.length ? html`<section><h3>What each attempt ran with</h3><table class="grid"><thead><tr><th>Job</th><th>Attempt</th><th>Agent version</th><th>System prompt SHA-256</th><th>Override</th></tr></thead>
  <tbody>${state.prompts.map((p) => html`<tr><td><code>${p.job_id}</code></td><td class="num">${p.attempt}</td><td class="num">${p.agent_version ?? "—"}</td><td class="wrap"><code>${p.system_prompt_sha256 ?? "—"}</code></td><td>${p.prompt_overridden === null ? "—" : p.prompt_overridden ? "yes" : "no"}</td></tr>`)}</tbody></table></section>` : ""}` : ""}`;
}

export interface Verification {
  stream: string; ok: boolean; events: number; unchained: number;
  head: { revision: number; chain: string | null } | null;
  break: { revision: number; kind: string; detail: string } | null;
}

export function verifyPage(input: { scope: Scope; sessionId: string; session: SessionSummary | null; results: Verification[]; problem: SafeHtml | null; csrf: string }): SafeHtml {
  const { results } = input;
  const broken = results.filter((r) => !r.ok);
  return html`${sessionHeader(input.scope, input.sessionId, input.session, "verify", input.csrf)}
<h2>Hash chains</h2>
${input.problem}
${results.length ? html`<p class="verdict ${broken.length ? "bad" : "good"}" id="verdict">${broken.length
    ? `${broken.length} of ${results.length} streams do not verify`
    : `All ${results.length} streams verify: every event links to the one before it`}</p>
<table class="grid" id="verification"><thead><tr><th>Stream</th><th>Result</th><th>Events</th><th>Unchained</th><th>Head</th><th>First break</th></tr></thead>
<tbody>${results.map((r) => html`<tr data-stream="${r.stream}"><td><code>${r.stream}</code></td><td>${r.ok ? html`<span class="tag good">ok</span>` : html`<span class="tag bad">broken</span>`}</td>
  <td class="num">${r.events}</td><td class="num">${r.unchained}</td><td class="wrap">${r.head ? html`rev ${r.head.revision} <code>${r.head.chain ?? "—"}</code>` : "—"}</td>
  <td>${r.break ? html`rev ${r.break.revision}: ${r.break.kind} — ${r.break.detail}` : "—"}</td></tr>`)}</tbody></table>
<p class="muted">Keep a head's chain somewhere else: a later check whose chain no longer passes through it proves the stream's tail was rewritten.</p>` : ""}`;
}
