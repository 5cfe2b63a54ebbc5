/** Stream names, category first, so category subscriptions and auditors can find them. */
export const agentStream = (id: string) => `agent-${id}`;
export const sessionStream = (id: string) => `session-${id}`;
export const jobStream = (id: string) => `job-${id}`;
export const idempotencyStream = (hash: string) => `idempotency-${hash}`;
/** An app's data keys for the secret box (src/secrets/secretBox.ts), only ever wrapped. */
export const keyringStream = (appId: string) => `keyring-${appId}`;
export const appStream = (id: string) => `app-${id}`;
/** One usage-limit pool: `<app>:<subject>:<period>` (src/domain/billing/limits.ts). */
export const budgetStream = (id: string) => `budget-${id}`;
/** The management plane's root token, as a hash (src/auth/rootToken.ts): one stream for the whole store. */
export const rootTokenStream = () => "operator-root";
export const endUserSigningStream = () => "operator-end-user-signing";
/** An app's own skills (src/domain/skill/), one stream per app and data partition: `skills-<app>`. */
export const skillsStream = (appId: string) => `skills-${appId}`;
/** The key file URLs are signed with (src/app/fileUrls.ts): one stream for the whole store. */
export const fileSigningStream = () => "operator-file-signing";
/** One file's record (src/domain/file/): `file-<file_id>`. */
export const fileStream = (id: string) => `file-${id}`;
/** Which files reference one blob's content: `blob-<sha256>`. */
export const blobStream = (sha256: string) => `blob-${sha256}`;
/**
 * An end user's model credentials (BYOS) in one data partition: `credentials-<appId>:<sha256(user_id)>`.
 * The user id is hashed so that any id fits a stream name and no stream name carries personal data.
 */
export const userCredentialsId = (appId: string, userId: string): string => `${appId}:${Bun.SHA256.hash(userId, "hex") as string}`;
export const credentialsStream = (id: string) => `credentials-${id}`;
/** One memory entry (src/domain/memory/): `memory-<mem_id>`. */
export const memoryStream = (id: string) => `memory-${id}`;

/** The record of a data partition's erasures (src/domain/erasure/): `erasures-<appId>`. */
export const erasureStream = (appId: string) => `erasures-${appId}`;

/** The id after the category: `session-sess_123` → `sess_123`. */
export const idOf = (stream: string): string => stream.slice(stream.indexOf("-") + 1);
export const categoryOf = (stream: string): string => {
  const dash = stream.indexOf("-");
  return dash < 0 ? stream : stream.slice(0, dash);
};

/** The single tenant every resource belongs to until the tenancy work lands. */
export const DEFAULT_APP_ID = "app_default";
export const DEFAULT_AGENT_ID = "agt_default";
