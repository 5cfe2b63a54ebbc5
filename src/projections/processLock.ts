/**
 * Marks a read-model file as in use by a running process, so `projections rebuild` refuses to reset
 * tables under a live server. A pid file, not an OS lock: a stale file from a killed process is
 * recognised (its pid is gone) and taken over.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

export class ReadModelInUseError extends Error {
  constructor(readonly pid: number, path: string) {
    super(`The read models in ${path} are in use by process ${pid}; stop it first`);
    this.name = "ReadModelInUseError";
  }
}

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
};

/** Claims `lockPath` for this process; throws ReadModelInUseError if a live process holds it. */
export function acquireProcessLock(lockPath: string, dbPath: string): () => void {
  if (existsSync(lockPath)) {
    const pid = Number.parseInt(readFileSync(lockPath, "utf8"), 10);
    if (Number.isInteger(pid) && pid !== process.pid && isAlive(pid)) throw new ReadModelInUseError(pid, dbPath);
  }
  mkdirSync(dirname(lockPath), { recursive: true });
  writeFileSync(lockPath, String(process.pid));
  return () => {
    try {
      if (readFileSync(lockPath, "utf8") === String(process.pid)) rmSync(lockPath);
    } catch {
      /* already gone */
    }
  };
}
