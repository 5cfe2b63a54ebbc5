/** Client-supplied JSON Schemas cannot stall the server: patterns run on a linear-time engine. */
import { describe, expect, test } from "bun:test";
import { compileSchema, requireValidSchema } from "../../src/core/jsonSchema.ts";
import { ValidationError } from "../../src/core/errors.ts";

describe("patterns in client schemas", () => {
  test("a catastrophic pattern is matched in linear time, with the right answer", () => {
    // A backtracking engine runs the non-matching ones to its step limit; RE2 answers in one pass.
    const validate = compileSchema({ type: "string", pattern: "^(a+)+$" });
    expect(validate("a".repeat(5000) + "!")).toBe(false);
    expect(validate("a".repeat(5000))).toBe(true);
    const keys = compileSchema({ type: "object", patternProperties: { "^(x+x+)+y$": { type: "number" } } });
    expect(keys({ ["x".repeat(3000) + "y"]: "not a number" })).toBe(false);
    expect(keys({ ["x".repeat(3000) + "z"]: "not matched, so free" })).toBe(true);
  });

  test("a pattern a backtracking engine gives up on still gets the right answer", () => {
    // Bun's native engine backtracks here until its step limit (about half a second per check, on
    // the event loop) and then answers "no match", which is wrong: the second branch matches.
    const validate = compileSchema({ type: "string", pattern: "^(?:(a+)+$|a+!c$)" });
    expect(validate("a".repeat(40) + "!c")).toBe(true);
    expect(validate("a".repeat(40) + "!d")).toBe(false);
    const keys = compileSchema({ type: "object", patternProperties: { "^(?:(x+x+)+y$|x+z$)": { type: "number" } } });
    expect(keys({ ["x".repeat(40) + "z"]: "not a number" })).toBe(false);
    expect(keys({ ["x".repeat(40) + "z"]: 1 })).toBe(true);
  });

  test("patterns that cannot run in linear time (backreferences, lookaround) are refused as invalid", () => {
    for (const pattern of ["(a)\\1", "^(?=a)a", "(?<!x)y"]) {
      expect(() => requireValidSchema({ type: "string", pattern })).toThrow(ValidationError);
    }
  });
});
