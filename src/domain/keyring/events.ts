/**
 * The keyring stream's events (`keyring-<appId>`): an app's data keys for the secret box
 * (src/secrets/secretBox.ts), each only ever stored wrapped (AES-256-GCM) by a master key that never
 * enters the store. See src/core/eventContract.ts for versioning.
 *
 * - `DataKeyCreated` adds a data key; the newest one created is the one new secrets are sealed with.
 * - `DataKeyRewrapped` records the same data key wrapped again, under another master key (master-key
 *   rotation). The newest wrapping of a key is the one used; earlier events are never rewritten.
 */
import { Type } from "@sinclair/typebox";
import { eventCodec, type EventsOf } from "../../core/eventContract.ts";

const Wrapping = {
  app_id: Type.String({ minLength: 1 }),
  /** The data key's id, named in every value sealed with it (`sb1:<key_id>:…`). */
  key_id: Type.String({ minLength: 1 }),
  /** The data key wrapped by the master key: `<iv>.<ciphertext+tag>`, base64url. */
  wrapped: Type.String({ minLength: 1 }),
  /** Which master key wrapped it: a short hash of that key, never the key. */
  master_key_id: Type.String({ minLength: 1 }),
};

export const KEYRING_EVENTS = {
  DataKeyCreated: { version: 1, schema: Type.Object(Wrapping) },
  DataKeyRewrapped: { version: 1, schema: Type.Object(Wrapping) },
};

export type KeyringEvent = EventsOf<typeof KEYRING_EVENTS>;
export const keyringEvents = eventCodec(KEYRING_EVENTS);
