/**
 * JSON Schema for schemas clients send (agents' and runs' output_schema): compiled once and cached,
 * and refused with a 400 naming the parameter when they are not valid JSON Schema.
 */
import Ajv, { type ValidateFunction } from "ajv";
import { ValidationError } from "./errors.ts";

const ajv = new Ajv({ allErrors: true, strict: false });
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

