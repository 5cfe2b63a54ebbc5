/** Error translation shared by the compat surfaces: the parts of our envelope every wire format needs. */
import type { ErrorBody } from "../../http/errors.ts";

/** The request parameter an error names, if any (validation errors and typed refusals carry one). */
export const paramOf = (body: ErrorBody): string | null => {
  const param = body.error.details?.param;
  return typeof param === "string" ? param : null;
};
