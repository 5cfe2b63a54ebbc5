/**
 * Repositories decide on their cached state when nothing newer is known, and still never decide on
 * state another process has moved past: an append is guarded by its expected revision, and a refusal
 * is only given on state read from the store. Two repositories over one store stand for two processes.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Repository } from "../../src/app/repository.ts";
import { StreamTails } from "../../src/app/streamTails.ts";
import { sessionEvents } from "../../src/domain/session/events.ts";
import { sessionDecider } from "../../src/domain/session/session.ts";
import { sessionStream } from "../../src/domain/streams.ts";
import { SqliteEventStore } from "../../src/eventstore/adapters/sqlite.ts";

const dirs: string[] = [];
const stores: SqliteEventStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function twoProcesses() {
  const dir = mkdtempSync(join(tmpdir(), "agentry-repo-"));
  dirs.push(dir);
  const open = () => {
    const store = new SqliteEventStore({ path: join(dir, "events.sqlite"), synchronous: "normal" });
    stores.push(store);
    // Each "process" has its own tail cache, which never hears of the other's appends here: the worst case.
    return new Repository(store, sessionDecider, sessionEvents, sessionStream, new StreamTails({ maxStreams: 100, maxEvents: 100 }));
  };
  return { here: open(), there: open() };
}

const meta = { appId: "app_test" };
const send = (n: number) => ({
  type: "SendMessage" as const, message_id: `msg_${n}`, job_id: `job_${n}`, content: `message ${n}`, attachments: [], model: null, context: null, multitask: "reject" as const,
});

test("a refusal decided on a stale cached state is checked against the store before it is given", async () => {
  const { here, there } = twoProcesses();
  await here.handle("s1", { type: "StartSession", session_id: "s1", agent_id: "agt", user_id: "u", name: "", external_ref: null, metadata: {} }, meta);
  await here.handle("s1", send(1), meta); // here caches: a turn in flight
  // Another process ends that turn; here does not know.
  await there.handle("s1", { type: "EndTurn", job_id: "job_1", outcome: "completed", reply: null, error: null }, meta);
  // On the cached state this would be session_busy; on the store's it is accepted.
  const sent = await here.handle("s1", send(2), meta);
  expect(sent.appended.map((e) => e.type)).toEqual(["MessageSent"]);
  expect(sent.state.turns.map((t) => t.job_id)).toEqual(["job_2"]);
});

test("an append decided on a stale cached state is refused by its expected revision and decided again", async () => {
  const { here, there } = twoProcesses();
  await here.handle("s2", { type: "StartSession", session_id: "s2", agent_id: "agt", user_id: "u", name: "", external_ref: null, metadata: {} }, meta);
  await here.handle("s2", send(1), meta);
  await there.handle("s2", { type: "EndTurn", job_id: "job_1", outcome: "completed", reply: null, error: null }, meta);
  await there.handle("s2", send(2), meta); // the other process started the next turn
  // On the cached state (job_1 in flight) this message would be queued behind job_1; in truth job_2 is in flight.
  const queued = await here.handle("s2", { ...send(3), multitask: "enqueue" }, meta);
  expect(queued.state.turns.map((t) => t.job_id)).toEqual(["job_2", "job_3"]);
  const { state } = await there.load("s2");
  expect(state.turns.map((t) => t.job_id)).toEqual(["job_2", "job_3"]);
});

test("several commands are decided in order, each on the state the ones before leave, and written together or not at all", async () => {
  const { here, there } = twoProcesses();
  await here.handle("s3", { type: "StartSession", session_id: "s3", agent_id: "agt", user_id: "u", name: "", external_ref: null, metadata: {} }, meta);
  // The second message sees the first one's turn in flight: queued behind it.
  const both = await here.handle("s3", [send(1), { ...send(2), multitask: "enqueue" }], meta);
  expect(both.appended.map((e) => e.type)).toEqual(["MessageSent", "MessageSent"]);
  expect(both.state.turns.map((t) => t.job_id)).toEqual(["job_1", "job_2"]);
  // One refused: neither is written.
  await expect(here.handle("s3", [{ ...send(3), multitask: "enqueue" }, send(4)], meta)).rejects.toMatchObject({ code: "session_busy" });
  const { state, revision } = await there.load("s3");
  expect(state.turns.map((t) => t.job_id)).toEqual(["job_1", "job_2"]);
  expect(revision).toBe(2n);
});
