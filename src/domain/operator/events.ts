/**
 * The operator stream's events (`operator-root`): the management plane's root token. The token itself
 * is never stored, only its SHA-256 and a short display prefix, so every process and machine sharing
 * the store agrees on which root token works. The newest `RootTokenSet` is the one in force; the one it
 * replaced stops working. See src/core/eventContract.ts for versioning and src/auth/rootToken.ts.
 */
import { Type } from "@sinclair/typebox";
import { eventCodec, type EventsOf } from "../../core/eventContract.ts";

export const OPERATOR_EVENTS = {
  RootTokenSet: {
    version: 1,
    schema: Type.Object({
      /** SHA-256 of the token, hex. */
      hash: Type.String({ pattern: "^[0-9a-f]{64}$" }),
      /** The token's first characters (`agr_ab12`), to tell tokens apart; never more of it. */
      prefix: Type.String({ maxLength: 16 }),
      /** Where the token came from: `ADMIN_TOKEN` ("env") or generated on a first start ("generated"). */
      source: Type.Union([Type.Literal("env"), Type.Literal("generated")]),
    }),
  },
};

/**
 * The secret end-user tokens are signed with (stream `operator-end-user-signing`), sealed by the secret
 * box: created once, by whichever process first needs it, and shared by all.
 */
export const END_USER_SIGNING_EVENTS = {
  EndUserSigningKeyCreated: { version: 1, schema: Type.Object({ key_id: Type.String(), sealed: Type.String() }) },
};

export type OperatorEvent = EventsOf<typeof OPERATOR_EVENTS>;
export const endUserSigningEvents = eventCodec(END_USER_SIGNING_EVENTS);
export const operatorEvents = eventCodec(OPERATOR_EVENTS);
