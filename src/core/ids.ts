/** Id generation lives at the edges (HTTP handlers, workers); deciders receive ids through commands. */

/** A random RFC 4122 v4 UUID, the form event ids take in every store. */
export const newEventId = (): string => crypto.randomUUID();

/** A sortable, prefixed resource id such as `sess_01J…`: time-ordered (UUIDv7) so ids sort by creation. */
export const newResourceId = (prefix: string): string =>
  `${prefix}_${Bun.randomUUIDv7().replaceAll("-", "")}`;

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const isUuid = (value: string): boolean => UUID_PATTERN.test(value);
