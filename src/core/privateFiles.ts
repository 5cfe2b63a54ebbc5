/**
 * Data files hold every conversation and the API key: only the server's own user may read them.
 * Folders are created 0700 and files 0600 (SQLite gives its -wal and -shm files the database file's
 * mode, so preparing the database file covers them).
 */
import { chmodSync, closeSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";

/** Creates the file's folder (0700) and the file itself (0600) if missing; tightens an existing file to 0600. */
export function preparePrivateFile(path: string): void {
  if (path === ":memory:") return;
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  closeSync(openSync(path, "a", 0o600));
  chmodSync(path, 0o600);
}

/** Creates a folder for private files (0700) if missing. */
export function preparePrivateDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
}
