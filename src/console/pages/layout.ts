/** The frame every console page shares: head, navigation, who is logged in, and notices. */
import type { ManagementPrincipal } from "../../auth/management.ts";
import { csrfField, html, type SafeHtml } from "../html.ts";

export type Section = "sessions" | "operator" | "jobs" | "apps";

export interface Frame {
  title: string;
  principal: ManagementPrincipal | null;
  /** The login's CSRF token, for the logout form (with a principal). */
  csrf?: string;
  section?: Section;
  /** A message to show on top (what an action did). */
  notice?: string | null;
  body: SafeHtml;
}

const NAV: Array<[Section, string, string]> = [
  ["sessions", "Sessions", "/console/sessions"],
  ["operator", "Operator", "/console/operator"],
  ["jobs", "Jobs", "/console/jobs"],
  ["apps", "Apps & keys", "/console/apps"],
];

export function layout({ title, principal, csrf, section, notice, body }: Frame): SafeHtml {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Agentry console</title>
<link rel="stylesheet" href="/console/assets/console.css">
<script src="/console/assets/console.js" defer></script>
</head>
<body>
<header class="top">
  <a class="brand" href="/console">Agentry <span>console</span></a>
  ${principal ? html`<nav>${NAV.map(([key, label, to]) => html`<a href="${to}"${key === section ? html` aria-current="page"` : ""}>${label}</a>`)}</nav>
  <div class="who"><span title="The management principal this console acts as">${principal.kind === "root" ? "root token" : principal.subject} · ${principal.role}${principal.apps === "all" ? "" : html` · ${principal.apps.join(", ")}`}</span>
    <form method="post" action="/console/logout">${csrfField(csrf ?? "")}<button type="submit" class="link">Log out</button></form></div>` : ""}
</header>
<main>
${notice ? html`<p class="notice" role="status">${notice}</p>` : ""}
${body}
</main>
</body>
</html>`;
}

/** An API refusal as the console shows it: its code and message, as the API gave them. */
export function problem(status: number, body: unknown): SafeHtml {
  const error = (body as { error?: { code?: unknown; message?: unknown; request_id?: unknown } } | null)?.error;
  return html`<div class="problem" role="alert"><strong>${status} ${typeof error?.code === "string" ? error.code : "error"}</strong>
  <span>${typeof error?.message === "string" ? error.message : "The request failed"}</span>
  ${typeof error?.request_id === "string" ? html`<small>request ${error.request_id}</small>` : ""}</div>`;
}

/** A time as the API gave it (ISO 8601), shown in UTC without the milliseconds. */
export const when = (iso: string | null | undefined): string => (iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "—");
