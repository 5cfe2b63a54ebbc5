/**
 * The secret box's errors. None of them ever carries a secret, a key or a sealed value: only ids
 * (app, data key, master key) and what went wrong.
 */
export class SecretBoxError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * A sealed value that cannot be opened: malformed, altered (ciphertext, iv, tag or key id), sealed for
 * another app, or naming a data key the app's keyring does not hold. Authenticated encryption cannot
 * tell these apart, and callers should not either: the value is not to be trusted.
 */
export class SecretOpenError extends SecretBoxError {
  constructor(message: string) {
    super("secret_unreadable", message);
  }
}

/**
 * The box lacks the master key a data key is wrapped by (a wrong `SECRETS_MASTER_KEY`, or a rotated-out
 * key missing from `SECRETS_PREVIOUS_MASTER_KEYS`), or the master key itself is unusable (a damaged key
 * file). Names master key ids, never keys.
 */
export class MasterKeyError extends SecretBoxError {
  constructor(message: string) {
    super("master_key_unavailable", message);
  }
}
