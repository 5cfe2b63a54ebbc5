/**
 * End-user-funded inference (BYOS): the provider a turn of an agent with `billing: "end_user"` runs on.
 *
 * The target is the agent's connection (its provider kind, base URL, default model, headers), or the
 * server's own provider when the agent names none; the key is the session user's credential for that
 * provider kind (`/v1/users/{user_id}/credentials/{provider}`), never the app's. Before any model call:
 * no user or no credential fails the job with `credential_required`; an access token past its expiry is
 * refreshed at the connection's token endpoint when it can be, else the job fails with
 * `credential_expired`. Both messages are meant for the end user. A provider refusing the user's
 * credential is refreshed once and retried (OAuth, before anything streamed), else `credential_expired`.
 *
 * A refresh is decided against the credential's version: when two jobs refresh at once (in this process
 * they share one refresh; across processes each may call the endpoint), one append wins and the other
 * reloads and uses the winner's token.
 */
import type { AppContext } from "../../app/context.ts";
import type { CommandMetadata } from "../../app/repository.ts";
import { baseAppId } from "../../app/access.ts";
import { ConflictError, NotFoundError } from "../../core/errors.ts";
import type { AgentSpec } from "../../domain/agent/agent.ts";
import { connectionOf, type Connection } from "../../domain/app/app.ts";
import { credentialStatus, isRefreshable, needsRefresh, type CredentialProvider, type StoredCredential } from "../../domain/credential/credential.ts";
import { CREDENTIAL_PROVIDERS } from "../../domain/credential/events.ts";
import { userCredentialsId } from "../../domain/streams.ts";
import type { ProviderTarget } from "../../llm/connections.ts";
import { refreshTokens, RefreshError } from "../../llm/oauthRefresh.ts";
import { LlmError, type LlmProvider } from "../../llm/provider.ts";
import { PUBLIC_ONLY } from "../../net/outbound.ts";
import { secretView } from "../../secrets/secretBox.ts";
import { JobFailure } from "./outcome.ts";

const LABELS: Record<CredentialProvider, string> = { openai: "OpenAI", anthropic: "Anthropic", openai_compatible: "model provider" };

const required = (provider: CredentialProvider) =>
  new JobFailure("credential_required", `Connect your ${LABELS[provider]} account to continue.`);
const expired = (provider: CredentialProvider, why = "has expired") =>
  new JobFailure("credential_expired", `Your ${LABELS[provider]} connection ${why}. Reconnect your ${LABELS[provider]} account to continue.`);

export interface EndUserTurn {
  agent: AgentSpec;
  /** The agent's data partition (an app's live or test data). */
  dataApp: string;
  /** The session's (or run's) user. */
  userId: string;
  /** Test data: the credential is checked (and refreshed) as for live data, but the turn runs on the sandbox. */
  testData: boolean;
  /** The runner's metadata for what it appends (a refresh). */
  meta: CommandMetadata;
}

export async function endUserProvider(ctx: AppContext, turn: EndUserTurn): Promise<LlmProvider> {
  const { agent, dataApp, userId } = turn;
  const app = baseAppId(dataApp);
  const named = agent.model.connection;
  let target: ProviderTarget | null;
  let connection: Connection | undefined;
  if (named) {
    connection = connectionOf((await ctx.repos.apps.peek(app)).state.connections, named);
    if (!connection) throw new JobFailure("connection_not_found", `The app's model connection "${named}" no longer exists`);
    target = connection;
  } else {
    target = ctx.connections?.serverTarget(agent.model.provider ?? ctx.defaultProvider) ?? null;
  }
  const sandbox = ctx.providers.get("sandbox")!;
  if (!target || !ctx.connections || !(CREDENTIAL_PROVIDERS as readonly string[]).includes(target.provider)) {
    if (turn.testData) return sandbox;
    throw new JobFailure("provider_not_configured", "This agent is billed to its end users but runs on no provider they can connect");
  }
  const kind = target.provider as CredentialProvider;
  if (!userId) throw required(kind);
  const credentials = new UserCredential(ctx, dataApp, userId, kind, connection, { ...turn.meta, appId: dataApp, attributedUserId: userId });
  let credential = await credentials.usable();
  if (turn.testData) return sandbox;

  const connections = ctx.connections;
  const build = (c: StoredCredential) => connections.providerWithKey(
    `${dataApp}/${target.name}/user:${userCredentialsId(dataApp, userId)}`, app, target,
    { fingerprint: c.secret, open: () => ctx.secrets.open(dataApp, c.secret), oauth: c.kind === "oauth" },
  );
  let inner = await build(credential);
  return {
    name: inner.name,
    defaultModel: inner.defaultModel,
    async *stream(request) {
      let retried = false;
      for (;;) {
        let yielded = false;
        try {
          for await (const chunk of inner.stream(request)) {
            yielded = true;
            yield chunk;
          }
          return;
        } catch (err) {
          if (!(err instanceof LlmError && err.code === "provider_auth_failed")) throw err;
          // Refused before anything streamed: an OAuth token may have been revoked early; one refresh, one retry.
          if (yielded || retried || !credentials.canRefresh(credential)) throw expired(kind, "was refused");
          retried = true;
          credential = await credentials.refresh(credential);
          inner = await build(credential);
        }
      }
    },
  };
}

/** One user's credential for one provider kind, as a turn needs it: current, refreshed when it must be. */
class UserCredential {
  private readonly id: string;

  constructor(
    private readonly ctx: AppContext, private readonly dataApp: string, userId: string, private readonly kind: CredentialProvider,
    private readonly connection: Connection | undefined, private readonly meta: CommandMetadata,
  ) {
    this.id = userCredentialsId(dataApp, userId);
  }

  private async current(): Promise<StoredCredential | undefined> {
    return (await this.ctx.repos.credentials.load(this.id)).state.credentials[this.kind];
  }

  canRefresh(c: StoredCredential): boolean {
    return isRefreshable(c) && !!this.connection?.oauth;
  }

  /** The credential, refreshed first when it is expired (or about to be) and can be; else the failure to end the job with. */
  async usable(): Promise<StoredCredential> {
    const c = await this.current();
    if (!c) throw required(this.kind);
    const now = Date.now();
    if (!needsRefresh(c, now)) return c;
    if (this.canRefresh(c)) return this.refresh(c);
    // About to expire but not refreshable: it still works for now.
    if (credentialStatus(c, now) === "expired") throw expired(this.kind);
    return c;
  }

  /** New tokens for `c` (shared by every turn of this process refreshing the same version at once). */
  refresh(c: StoredCredential): Promise<StoredCredential> {
    const flight = `${this.id}/${this.kind}/${c.version}`;
    let work = inFlight.get(flight);
    if (!work) {
      work = this.refreshNow(c).finally(() => inFlight.delete(flight));
      inFlight.set(flight, work);
    }
    return work;
  }

  private async refreshNow(c: StoredCredential): Promise<StoredCredential> {
    const { ctx, dataApp, kind } = this;
    const oauth = this.connection!.oauth!;
    let tokens;
    try {
      tokens = await refreshTokens({
        token_url: oauth.token_url, client_id: oauth.client_id,
        client_secret: oauth.client_secret ? await ctx.secrets.open(baseAppId(dataApp), oauth.client_secret) : null,
      }, await ctx.secrets.open(dataApp, c.refresh_token!), { policy: ctx.outbound ?? PUBLIC_ONLY });
    } catch (err) {
      if (!(err instanceof RefreshError)) throw err;
      ctx.logger.warn("an end user's credential could not be refreshed", { app_id: dataApp, provider: kind, refused: err.refused, reason: err.message });
      if (err.refused) {
        await ctx.repos.credentials.handle(this.id, { type: "RefuseRefresh", provider: kind, based_on: c.version, reason: err.message }, this.meta).catch(() => {});
      }
      return this.winnerOr(c, () => expired(kind));
    }
    const at = Date.now();
    try {
      const r = await ctx.repos.credentials.handle(this.id, {
        type: "RefreshCredential", provider: kind, based_on: c.version,
        secret: await ctx.secrets.seal(dataApp, tokens.access_token),
        refresh_token: tokens.refresh_token ? await ctx.secrets.seal(dataApp, tokens.refresh_token) : null,
        expires_at: tokens.expires_in === null ? null : at + tokens.expires_in * 1000, last4: secretView(tokens.access_token).last4,
      }, this.meta);
      return r.state.credentials[kind]!;
    } catch (err) {
      // Another job refreshed first, or the user reconnected or disconnected: what is stored now decides.
      if ((err instanceof ConflictError && err.code === "credential_changed") || err instanceof NotFoundError) return this.winnerOr(c, () => expired(kind));
      throw err;
    }
  }

  /** The stored credential when it changed since `c` and works; else `failure`. */
  private async winnerOr(c: StoredCredential, failure: () => JobFailure): Promise<StoredCredential> {
    const now = await this.current();
    if (!now) throw required(this.kind);
    if (now.version !== c.version && credentialStatus(now, Date.now()) === "connected") return now;
    throw failure();
  }
}

/** Refreshes under way in this process, by credential version. */
const inFlight = new Map<string, Promise<StoredCredential>>();
