/**
 * The operators' screens: the read models (lag, and rebuilds with their progress), jobs by status, the
 * queue, and apps with their keys. Pure renderers of what the management API answered.
 */
import { csrfField, html, href, type SafeHtml } from "../html.ts";
import { when } from "./layout.ts";

export interface Rebuild {
  projection: string; state: "running" | "swapping" | "done" | "failed"; processed_events: number; total_events: number;
  progress: number; eta_ms: number | null; started_at: string; finished_at: string | null; error: string | null;
}
export interface Projection {
  name: string; version: number; state: string; checkpoint: string | null; lag_events: number; lag_events_capped: boolean;
  lag_ms: number; last_error: string | null; rebuild?: Rebuild | null;
}
export interface Queue { kind: string; depth: number | null; unfinished: Record<string, number> }
export interface JobCounts { counts: Record<string, number>; total: number }

const RUNNING = new Set(["running", "swapping"]);

export const duration = (ms: number): string => {
  if (ms < 1000) return `${ms} ms`;
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
};

/** One rebuild's state, progress bar and counts: also what the page's script redraws while it runs. */
function rebuildCell(name: string, r: Rebuild | null | undefined): SafeHtml {
  if (!r) return html`<div class="rebuild" data-projection-rebuild="${name}"><span class="rebuild-state muted">never rebuilt here</span></div>`;
  const running = RUNNING.has(r.state);
  return html`<div class="rebuild" data-projection-rebuild="${name}" data-state="${r.state}"${running ? html` data-poll="${href(["projections", name, "rebuild"])}"` : ""}>
  <span class="rebuild-state tag${r.state === "failed" ? " bad" : r.state === "done" ? " good" : ""}">${r.state}</span>
  <progress max="1" value="${r.progress}">${Math.round(r.progress * 100)}%</progress>
  <span class="rebuild-counts">${r.processed_events}/${r.total_events} events${running && r.eta_ms !== null ? ` · about ${duration(r.eta_ms)} left` : ""}${r.finished_at ? ` · finished ${when(r.finished_at)}` : ""}</span>
  ${r.error ? html`<span class="rebuild-error bad">${r.error}</span>` : ""}
</div>`;
}

export function operatorPage(input: {
  projections: Projection[] | null; jobs: JobCounts | null; queue: Queue | null; problems: SafeHtml[]; csrf: string;
}): SafeHtml {
  const { projections, jobs, queue } = input;
  return html`<h1>Operator</h1>
${input.problems}
<section>
<h2>Read models</h2>
<p class="muted">This process's projections: where each stands in the event store, and how far behind it is. A rebuild replays the store into a fresh copy and swaps it in; reads keep being served meanwhile.</p>
${projections ? html`<table class="grid" id="projections"><thead><tr><th>Projection</th><th>Version</th><th>State</th><th>Checkpoint</th><th>Lag</th><th>Last error</th><th>Rebuild</th><th></th></tr></thead>
<tbody>${projections.map((p) => html`<tr data-projection="${p.name}">
  <td><strong>${p.name}</strong></td><td class="num">v${p.version}</td><td><span class="tag${p.state === "live" ? " good" : p.state === "error" ? " bad" : ""}">${p.state}</span></td>
  <td><code>${p.checkpoint ?? "—"}</code></td>
  <td class="num lag">${p.lag_events}${p.lag_events_capped ? "+" : ""} events${p.lag_ms > 0 ? ` · ${duration(p.lag_ms)}` : ""}</td>
  <td class="wrap">${p.last_error ?? "—"}</td>
  <td>${rebuildCell(p.name, p.rebuild)}</td>
  <td><form method="post" action="${href(["projections", p.name, "rebuild"])}" data-confirm="Rebuild ${p.name} from the event store?">${csrfField(input.csrf)}
    <button type="submit" class="rebuild-button"${p.rebuild && RUNNING.has(p.rebuild.state) ? html` disabled` : ""}>Rebuild</button></form></td>
</tr>`)}</tbody></table>` : ""}
</section>
<div class="columns">
<section>
<h2>Jobs by status</h2>
${jobs ? html`<table class="grid" id="job-counts"><tbody>${Object.entries(jobs.counts).map(([status, n]) => html`<tr data-status="${status}"><th><a href="${href(["jobs"], { status })}">${status.replace("_", " ")}</a></th><td class="num">${n}</td></tr>`)}
<tr class="total"><th><a href="/console/jobs">all</a></th><td class="num">${jobs.total}</td></tr></tbody></table>` : ""}
</section>
<section>
<h2>Queue</h2>
${queue ? html`<dl class="facts" id="queue">
  <div><dt>Queue</dt><dd>${queue.kind}</dd></div>
  <div><dt>Depth</dt><dd class="depth">${queue.depth === null ? html`<span class="bad">not answering</span>` : queue.depth}</dd></div>
  ${Object.entries(queue.unfinished).map(([status, n]) => html`<div><dt>${status.replace("_", " ")}</dt><dd>${n}</dd></div>`)}
</dl>
<p class="muted">Depth: jobs queued and not yet handed to a worker.</p>` : ""}
</section>
</div>`;
}

export interface OperatorJob {
  id: string; app_id: string; kind: string; session_id: string | null; user_id: string; status: string; attempts: number;
  error: unknown; created_at: string; completed_at: string | null;
}

/** A time in a dense table: month, day and time of day (UTC); the full time is its title. */
const short = (iso: string | null): string => (iso ? when(iso).slice(5) : "—");

const STATUSES = ["pending", "processing", "awaiting_approval", "completed", "failed", "cancelled"];

/** The app and data (live or test) a job's partition names. */
const scopeOf = (partition: string) => partition.endsWith(".test") ? { app: partition.slice(0, -5), mode: "test" } : { app: partition, mode: undefined };

export function jobsPage(input: { status: string | null; jobs: OperatorJob[]; nextCursor: string | null; problem: SafeHtml | null }): SafeHtml {
  const { status } = input;
  return html`<h1>Jobs${status ? html` · ${status.replace("_", " ")}` : ""}</h1>
<nav class="tabs"><a href="/console/jobs"${status === null ? html` aria-current="page"` : ""}>all</a>${STATUSES.map((s) => html`<a href="${href(["jobs"], { status: s })}"${s === status ? html` aria-current="page"` : ""}>${s.replace("_", " ")}</a>`)}</nav>
${input.problem}
${input.jobs.length === 0 && !input.problem ? html`<p class="empty">No jobs.</p>` : ""}
${input.jobs.length ? html`<table class="grid" id="jobs"><thead><tr><th>Job</th><th>App</th><th>Session</th><th>User</th><th>Status</th><th>Attempts</th><th>Queued</th><th>Ended</th><th>Error</th></tr></thead>
<tbody>${input.jobs.map((j) => {
    const scope = scopeOf(j.app_id);
    const code = (j.error as { code?: unknown } | null)?.code;
    return html`<tr data-job="${j.id}"><td><code>${j.id}</code><br><small class="muted">${j.kind}</small></td><td><code>${j.app_id}</code></td>
    <td>${j.session_id ? html`<a href="${href(["apps", scope.app, "sessions", j.session_id], { mode: scope.mode })}"><code>${j.session_id}</code></a>` : "—"}</td>
    <td>${j.user_id}</td><td><span class="tag${j.status === "failed" ? " bad" : j.status === "completed" ? " good" : ""}">${j.status}</span></td><td class="num">${j.attempts}</td>
    <td class="time" title="${j.created_at}">${short(j.created_at)}</td><td class="time" title="${j.completed_at ?? ""}">${short(j.completed_at)}</td><td>${typeof code === "string" ? html`<code>${code}</code>` : "—"}</td></tr>`;
  })}</tbody></table>` : ""}
${input.nextCursor ? html`<p><a class="button" href="${href(["jobs"], { status: status ?? undefined, cursor: input.nextCursor })}">Older jobs →</a></p>` : ""}`;
}

export interface App { id: string; name: string; status: string; key_count: number }
export interface ApiKey {
  id: string; name: string; prefix: string; mode: string; scopes: string[]; agent_ids: string[] | null; user_id: string | null;
  expires_at: string | null; valid_until: string | null; revoked: boolean; last_used_at: string | null;
}

export function appsPage(input: { apps: App[]; nextCursor: string | null; problem: SafeHtml | null }): SafeHtml {
  return html`<h1>Apps</h1>
${input.problem}
${input.apps.length ? html`<table class="grid" id="apps"><thead><tr><th>App</th><th>Name</th><th>Status</th><th>Active keys</th><th></th></tr></thead>
<tbody>${input.apps.map((a) => html`<tr data-app="${a.id}"><td><a href="${href(["apps", a.id])}"><code>${a.id}</code></a></td><td>${a.name}</td>
  <td><span class="tag${a.status === "suspended" ? " bad" : ""}">${a.status}</span></td><td class="num">${a.key_count}</td>
  <td><a href="${href(["sessions"], { app: a.id })}">sessions</a></td></tr>`)}</tbody></table>` : html`<p class="empty">No apps this token may see.</p>`}
${input.nextCursor ? html`<p><a class="button" href="${href(["apps"], { cursor: input.nextCursor })}">More apps →</a></p>` : ""}`;
}

export function appPage(input: { appId: string; app: App | null; keys: ApiKey[]; problem: SafeHtml | null; csrf: string }): SafeHtml {
  const { appId, app } = input;
  return html`<p class="crumbs"><a href="/console/apps">Apps</a> / <code>${appId}</code></p>
<h1>${app ? app.name : appId}</h1>
${input.problem}
${app ? html`<dl class="facts"><div><dt>Id</dt><dd><code>${app.id}</code></dd></div><div><dt>Status</dt><dd>${app.status}</dd></div><div><dt>Active keys</dt><dd>${app.key_count}</dd></div>
<div><dt>Audit</dt><dd><a href="${href(["sessions"], { app: app.id })}">its sessions</a></dd></div></dl>` : ""}
<h2>API keys</h2>
<p class="muted">Keys are stored as hashes: only their prefixes can be shown. Revoking takes effect at once, on every server.</p>
${input.keys.length ? html`<table class="grid" id="keys"><thead><tr><th>Key</th><th>Name</th><th>Mode</th><th>Scopes</th><th>Limited to</th><th>Expires</th><th>Last used</th><th>State</th><th></th></tr></thead>
<tbody>${input.keys.map((k) => html`<tr data-key="${k.id}"><td><code>${k.prefix}…</code><br><small><code>${k.id}</code></small></td><td>${k.name}</td><td>${k.mode}</td>
  <td>${k.scopes.map((s) => html`<span class="tag">${s}</span> `)}</td>
  <td>${k.user_id ? html`user ${k.user_id}` : ""}${k.agent_ids ? html` agents ${k.agent_ids.join(", ")}` : ""}${!k.user_id && !k.agent_ids ? "—" : ""}</td>
  <td>${when(k.valid_until ?? k.expires_at)}</td><td>${when(k.last_used_at)}</td>
  <td class="key-state">${k.revoked ? html`<span class="tag bad">revoked</span>` : html`<span class="tag good">active</span>`}</td>
  <td>${k.revoked ? "" : html`<form method="post" action="${href(["apps", appId, "keys", k.id, "revoke"])}" data-confirm="Revoke ${k.name} (${k.prefix}…)? Requests with it are refused at once.">${csrfField(input.csrf)}
    <button type="submit" class="danger">Revoke</button></form>`}</td></tr>`)}</tbody></table>` : html`<p class="empty">No keys.</p>`}`;
}
