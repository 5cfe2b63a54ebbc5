/**
 * Structured logs: one JSON object per line on stdout (stderr for errors), so operators can ship them
 * anywhere. Secrets never go in `fields`. A line written while a request is handled carries its
 * `request_id` (see src/core/requestContext.ts).
 */
import { currentRequestId } from "./requestContext.ts";

export type LogLevel = "debug" | "info" | "warn" | "error";

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
  /**
   * Shows a secret to the person starting the server, once, as plain text on the terminal (stderr) —
   * never as a field of a JSON log line, which may be shipped and kept elsewhere.
   */
  showSecretOnce(title: string, secret: string, note: string): void;
}

export function createLogger(
  level: LogLevel = "info",
  base: Record<string, unknown> = {},
  /** Where lines go (tests capture them); stdout, or stderr for errors, when absent. */
  sink?: (line: string, level: LogLevel) => void,
): Logger {
  const min = RANK[level];
  const write = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (RANK[lvl] < min) return;
    const requestId = currentRequestId();
    const line = JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...(requestId ? { request_id: requestId } : {}), ...base, ...fields }, (_k, v) =>
      typeof v === "bigint" ? v.toString() : v instanceof Error ? { name: v.name, message: v.message } : v,
    );
    if (sink) sink(line, lvl);
    else (lvl === "error" ? process.stderr : process.stdout).write(line + "\n");
  };
  return {
    debug: (m, f) => write("debug", m, f),
    info: (m, f) => write("info", m, f),
    warn: (m, f) => write("warn", m, f),
    error: (m, f) => write("error", m, f),
    child: (fields) => createLogger(level, { ...base, ...fields }, sink),
    showSecretOnce: (title, secret, note) => {
      const rule = "=".repeat(72);
      process.stderr.write(`\n${rule}\n${title}\n\n    ${secret}\n\n${note}\n${rule}\n\n`);
    },
  };
}

/** A logger that drops everything: for tests and benchmarks. */
export const silentLogger: Logger = {
  debug() {}, info() {}, warn() {}, error() {}, showSecretOnce() {},
  child: () => silentLogger,
};
