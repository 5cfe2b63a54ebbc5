/**
 * What a tool may hand back besides its result, checked before anything of it is recorded: the assets
 * it made (registered with `asset_N` labels) and the events it emits while it runs (`tool.progress`,
 * `info`, `canvas_op`). Tools' answers are untrusted (an HTTP tool is the app's endpoint): anything
 * malformed becomes a tool error the model sees, never a failure of the job.
 */
import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import type { AssetInput, ToolEmission } from "./tool.ts";

/** At most this many assets from one call. */
export const MAX_ASSETS_PER_CALL = 20;
/** At most this many progress, info and canvas events from one call; one more fails the call. */
export const MAX_EVENTS_PER_CALL = 100;

/**
 * The forms of a file id the files API issues: `file_<id>` (uploads, artifacts) and `file_<id>_<n>` (a
 * message's n-th inline attachment). Here only its form is checked; that it names a file of the job's
 * own app and user is checked when the assets are registered (runner/toolStep.ts).
 */
export const FILE_ID_PATTERN = "^file_[A-Za-z0-9]{1,64}(_[0-9]{1,4})?$";

const Kind = Type.Union([Type.Literal("image"), Type.Literal("video"), Type.Literal("audio"), Type.Literal("file")]);

const AssetItem = Type.Object({
  url: Type.Optional(Type.String({ pattern: "^https?://", maxLength: 4096 })),
  file_id: Type.Optional(Type.String({ pattern: FILE_ID_PATTERN })),
  kind: Kind,
  prompt: Type.Optional(Type.String({ maxLength: 10_000 })),
  model: Type.Optional(Type.String({ maxLength: 200 })),
}, { additionalProperties: false });

const Assets = TypeCompiler.Compile(Type.Array(AssetItem, { maxItems: MAX_ASSETS_PER_CALL }));

/** Each kind of event a tool may emit, checked by its own schema so an error names the field. */
const EMISSIONS = {
  progress: TypeCompiler.Compile(Type.Object({
    type: Type.Literal("progress"),
    progress: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    message: Type.Optional(Type.String({ minLength: 1, maxLength: 1000 })),
  }, { additionalProperties: false })),
  info: TypeCompiler.Compile(Type.Object({ type: Type.Literal("info"), content: Type.String({ minLength: 1, maxLength: 4000 }) }, { additionalProperties: false })),
  canvas_op: TypeCompiler.Compile(Type.Object({
    type: Type.Literal("canvas_op"), op: Type.String({ minLength: 1, maxLength: 100 }), args: Type.Record(Type.String(), Type.Unknown()),
  }, { additionalProperties: false })),
};
const MAX_CANVAS_ARGS_BYTES = 16 * 1024;

/** Where a value first breaks a compiled schema, as `/path: message`. */
const firstError = (errors: Iterable<{ path: string; message: string }>): string => {
  for (const e of errors) return `${e.path || "/"}: ${e.message}`;
  return "invalid";
};

/** The assets a tool returned, checked; throws a message the model can act on. */
export function checkAssets(value: unknown): AssetInput[] {
  if (!Array.isArray(value)) throw new Error("assets must be an array");
  if (value.length > MAX_ASSETS_PER_CALL) throw new Error(`assets holds ${value.length} items; at most ${MAX_ASSETS_PER_CALL} per call`);
  if (!Assets.Check(value)) throw new Error(`assets${firstError(Assets.Errors(value))}`);
  value.forEach((a: Static<typeof AssetItem>, i) => {
    if ((a.url === undefined) === (a.file_id === undefined)) throw new Error(`assets/${i}: give a url or a file_id, exactly one of the two`);
  });
  return value as AssetInput[];
}

/** An event a tool emits, checked; throws a message naming what is wrong. */
export function checkEmission(value: unknown): ToolEmission {
  const type = (value as { type?: unknown } | null)?.type;
  if (typeof type !== "string" || !Object.hasOwn(EMISSIONS, type)) {
    throw new Error(`an event's type must be progress, info or canvas_op${typeof type === "string" ? `, not ${JSON.stringify(type.slice(0, 40))}` : ""}`);
  }
  const check = EMISSIONS[type as keyof typeof EMISSIONS];
  if (!check.Check(value)) throw new Error(`${type === "info" ? "an" : "a"} ${type} event is malformed at ${firstError(check.Errors(value))}`);
  const e = value as ToolEmission;
  if (e.type === "progress" && e.progress === undefined && e.message === undefined) throw new Error("a progress event needs progress (0..1), a message, or both");
  if (e.type === "canvas_op" && Buffer.byteLength(JSON.stringify(e.args)) > MAX_CANVAS_ARGS_BYTES) {
    throw new Error(`a canvas_op's args are over ${MAX_CANVAS_ARGS_BYTES} bytes`);
  }
  return e;
}
