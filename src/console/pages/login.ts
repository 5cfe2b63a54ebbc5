/** The login page: the operator pastes the root token or a management JWT. */
import { html, type SafeHtml } from "../html.ts";

export function loginPage(next: string, error: string | null): SafeHtml {
  return html`<section class="login">
  <h1>Log in</h1>
  <p>Paste the operator's root token (printed on the server's first start, or <code>ADMIN_TOKEN</code>) or a
  management JWT. It is checked once and not stored: this browser gets a session cookie instead.</p>
  ${error ? html`<p class="problem" role="alert">${error}</p>` : ""}
  <form method="post" action="/console/login" class="stack">
    <input type="hidden" name="next" value="${next}">
    <label>Management token <input type="password" name="token" autocomplete="off" required autofocus spellcheck="false"></label>
    <button type="submit">Log in</button>
  </form>
</section>`;
}
