/**
 * A server key's own user. Some wire formats (Magus, MUAPI, Mosoo) start conversations without naming
 * a user, but every session has one: a key that names none acts as `<surface>-<key id>`, so each
 * integration's conversations are its own. End-user ids are the app's to choose, so one could be
 * spelled the same way and, as that user, reach the key's conversations: such ids are reserved, and
 * refused when an end-user token is minted.
 */
export type KeyUserSurface = "magus" | "mosoo" | "muapi";

export const keyUserId = (surface: KeyUserSurface, keyId: string): string => `${surface}-${keyId}`;

/** Whether an end-user id is spelled as a key's own user (`magus-key_…`, `mosoo-key_…`, `muapi-key_…`). */
export const isKeyUserId = (userId: string): boolean => /^(?:magus|mosoo|muapi)-key_/.test(userId);
