/**
 * What a reply cites: each piece of stored knowledge the agent was given while it answered, with a
 * snippet of it: memory entries (`memory_id`) and the message's files the model read (`file_id`).
 */
import { Type, type Static } from "@sinclair/typebox";

export const CitationSchema = Type.Union([
  Type.Object({ memory_id: Type.String(), snippet: Type.String() }, { title: "MemoryCitation" }),
  Type.Object({ file_id: Type.String(), snippet: Type.String() }, { title: "FileCitation" }),
]);

export type Citation = Static<typeof CitationSchema>;

/** How much of the cited text a citation quotes. */
export const SNIPPET_CHARS = 200;

export const snippetOf = (text: string): string => (text.length <= SNIPPET_CHARS ? text : `${text.slice(0, SNIPPET_CHARS - 1)}…`);
