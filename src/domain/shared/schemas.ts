/** Schemas shared by several aggregates' events. */
import { Type } from "@sinclair/typebox";

export const Nullable = <T extends import("@sinclair/typebox").TSchema>(t: T) => Type.Union([t, Type.Null()]);

export const AttachmentSchema = Type.Object({
  type: Type.Union([Type.Literal("url"), Type.Literal("asset"), Type.Literal("file")]),
  url: Type.Optional(Type.String()),
  asset_label: Type.Optional(Type.String()),
  name: Type.Optional(Type.String()),
  content_type: Type.Optional(Type.String()),
  /** Base64 content of an inline file, in messages recorded before files were stored apart (read as they are). */
  data: Type.Optional(Type.String()),
  /** A stored file (src/domain/file/): messages name their files by id and content hash, never with their bytes. */
  file_id: Type.Optional(Type.String()),
  size: Type.Optional(Type.Integer({ minimum: 0 })),
  sha256: Type.Optional(Type.String()),
});

export const JsonObject = Type.Record(Type.String(), Type.Unknown());

export const ErrorSchema = Type.Object({
  code: Type.String(),
  message: Type.String(),
  /** For a model provider's failure: the provider's id of the failed request, to trace it there. */
  provider_request_id: Type.Optional(Type.String()),
});

export const UsageFields = {
  prompt_tokens: Type.Integer({ minimum: 0 }),
  completion_tokens: Type.Integer({ minimum: 0 }),
  cached_tokens: Type.Integer({ minimum: 0 }),
  reasoning_tokens: Type.Integer({ minimum: 0 }),
};
