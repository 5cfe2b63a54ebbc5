/**
 * HTML built as strings, escaped by default: every value interpolated into `html` is escaped unless it
 * is itself `html` (a fragment built the same way). Event data, names and messages are user input, so
 * nothing reaches a page unescaped by accident.
 */

/** A fragment of markup already safe to send. */
export class SafeHtml {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);

/** A value as markup: fragments as they are, lists joined, null/undefined/false as nothing, the rest escaped. */
function render(value: unknown): string {
  if (value instanceof SafeHtml) return value.value;
  if (Array.isArray(value)) return value.map(render).join("");
  if (value === null || value === undefined || value === false) return "";
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1]!;
  return new SafeHtml(out);
}

/** A path under /console with its segments encoded and a query of the given (defined, non-empty) values. */
export function href(path: string[], query: Record<string, string | number | null | undefined> = {}): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") params.set(k, String(v));
  const qs = params.toString();
  return `/console/${path.map(encodeURIComponent).join("/")}${qs ? `?${qs}` : ""}`;
}

/** The hidden field that carries a login's CSRF token in every form of its pages. */
export const csrfField = (token: string): SafeHtml => html`<input type="hidden" name="csrf" value="${token}">`;

/** JSON for reading, indented (escaped where it is interpolated). */
export const pretty = (value: unknown): string => JSON.stringify(value, null, 2) ?? "null";
