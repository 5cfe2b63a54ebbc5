/** Client-supplied JSON Schemas cannot stall the server: patterns run on a linear-time engine. */
import { describe, expect, test } from "bun:test";
import { compileSchema, requireValidSchema } from "../../src/core/jsonSchema.ts";
import { ValidationError } from "../../src/core/errors.ts";

describe("patterns in client schemas", () => {
  test("a catastrophic pattern is matched in linear time, with the right answer", () => {
    // With a backtracking engine this one check would take longer than the test suite's whole run.
    const validate = compileSchema({ type: "string", pattern: "^(a+)+$" });
    expect(validate("a".repeat(5000) + "!")).toBe(false);
    expect(validate("a".repeat(5000))).toBe(true);
    const keys = compileSchema({ type: "object", patternProperties: { "^(x+x+)+y$": { type: "number" } } });
    expect(keys({ ["x".repeat(3000) + "y"]: "not a number" })).toBe(false);
    expect(keys({ ["x".repeat(3000) + "z"]: "not matched, so free" })).toBe(true);
  });

  test("patterns that cannot run in linear time (backreferences, lookaround) are refused as invalid", () => {
    for (const pattern of ["(a)\\1", "^(?=a)a", "(?<!x)y"]) {
      expect(() => requireValidSchema({ type: "string", pattern })).toThrow(ValidationError);
    }
  });
});
