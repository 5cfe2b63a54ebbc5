/**
 * JSON Schema for schemas clients send (agents' and runs' output_schema): compiled once and cached,
 * and refused with a 400 naming the parameter when they are not valid JSON Schema.
 *
 * A client's `pattern` or `patternProperties` runs on the event loop, so it must not be able to
 * backtrack for seconds (`^(a+)+$` against "aaaa…!"): patterns run on RE2 (re2js, a pure-JS port of
 * Google's linear-time engine), and those RE2 cannot run in linear time (backreferences, lookaround)
 * are refused when the schema is compiled, that is, when the client sends it.
 */
import Ajv, { type ValidateFunction } from "ajv";
import { RE2JS } from "re2js";
import { ValidationError } from "./errors.ts";

/**
 * Ajv's regular-expression hook: compiles with RE2; `test` finds a match anywhere, like RegExp's.
 * Ajv shares compiled patterns between schemas by `toString()`, so it must name the pattern (an
 * object's default "[object Object]" would make every schema use the first pattern compiled).
 */
const linearTimeRegExp = (pattern: string) => {
  const compiled = RE2JS.compile(pattern);
  return { test: (input: string) => compiled.matcher(input).find(), toString: () => `/${pattern}/re2` };
};

const ajv = new Ajv({ allErrors: true, strict: false, code: { regExp: linearTimeRegExp as never } });
const validators = new Map<string, ValidateFunction>();

/** Compiles (and caches) a JSON Schema; throws on an invalid schema. */
export function compileSchema(schema: Record<string, unknown>): ValidateFunction {
  const key = JSON.stringify(schema);
  let v = validators.get(key);
  if (!v) {
    v = ajv.compile(schema);
    if (validators.size > 500) validators.clear();
    validators.set(key, v);
  }
  return v;
}

/** Refuses a schema a client sent that is not valid JSON Schema (400 naming the parameter). */
export function requireValidSchema(schema: Record<string, unknown>, param = "output_schema"): void {
  try {
    compileSchema(schema);
  } catch (err) {
    throw new ValidationError(`${param} is not a valid JSON Schema: ${(err as Error).message}`, { param });
  }
}

