/**
 * Marks a read-model file as in use by a running process, so `projections rebuild` refuses to reset
 * tables under a live server. A pid file, not an OS lock: a stale file from a killed process is
 * recognised (its pid is gone) and taken over.
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

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
  mkdirSync(dirname(lockPath), { recursive: true, mode: 0o700 });
  for (let attempt = 0; ; attempt++) {
    try {
      // Exclusive create: of two processes starting together, one gets the file.
      const fd = openSync(lockPath, "wx", 0o600);
      writeFileSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 0) throw err;
      const pid = Number.parseInt(readFileSync(lockPath, "utf8"), 10);
      if (Number.isInteger(pid) && pid !== process.pid && isAlive(pid)) throw new ReadModelInUseError(pid, dbPath);
      rmSync(lockPath, { force: true }); // left by a process that is gone: take it over
    }
  }
  return () => {
    try {
      if (readFileSync(lockPath, "utf8") === String(process.pid)) rmSync(lockPath);
    } catch {
      /* already gone */
    }
  };
}

/**
 * The read-model file for a process that did not name one (READ_MODEL_FILE): `readmodels.sqlite` in
 * the data folder, or when a live process holds it, the first free `readmodels-N.sqlite`. So an API
 * process and workers started on one data folder with defaults each get their own, and keep it across
 * restarts (a process that comes back takes the lowest free one, usually its own, and catches up).
 */
export function claimDefaultReadModelFile(dataDir: string, limit = 64): { path: string; release: () => void } {
  for (let n = 1; n <= limit; n++) {
    const path = join(dataDir, n === 1 ? "readmodels.sqlite" : `readmodels-${n}.sqlite`);
    try {
      return { path, release: acquireProcessLock(`${path}.pid`, path) };
    } catch (err) {
      if (!(err instanceof ReadModelInUseError)) throw err;
    }
  }
  throw new Error(`All ${limit} read-model files in ${dataDir} are in use; set READ_MODEL_FILE`);
}
