/**
 * SSE at scale: N concurrent clients (10,000; 500 with --quick) on `GET /v1/sessions/{id}/stream`, all
 * on one session by default (`--sessions K` spreads them round-robin over K), next to a bare Elysia SSE
 * endpoint fanning the same message out to the same number of clients, in the same run.
 *
 * Three processes per measurement, everything on 127.0.0.1:
 * - this one (the conductor): starts the others, sends the events and records when it sent them;
 * - a server child (`--role agentry-server`, `startServer` on SQLite with synchronous=normal, or
 *   `--role bare-server`), whose RSS is read after a forced GC before and after the clients connect:
 *   RSS per connection = (RSS with N connected − RSS before) / N;
 * - a clients child (`--role clients`): N raw HTTP/1.1 sockets (`Bun.connect`), so client CPU and
 *   memory are not the server's. It timestamps every event it reads with `performance.timeOrigin +
 *   performance.now()`, a clock shared by processes on one machine; the offset between the two
 *   processes is measured by IPC ping-pong and subtracted anyway.
 *
 * Fan-out latency: one warm-up event, then `--events` (10) events, each sent once every client has
 * the previous one (plus a pause): for Agentry `POST /v1/sessions/{id}/assets` (it appends
 * asset.registered), for the baseline `POST /publish/{mark}`. Latency per client = receive time −
 * the time just before the POST; p50 and p99 are over every (client, event) pair.
 *
 * The "ratio" of these rows is Agentry ÷ baseline, a cost multiple: lower is better (as for the tail
 * poll latency rows of bench/api.ts). No target is set.
 *
 * `bun run bench/sse.ts [--quick] [--clients N] [--sessions K] [--events E] [--rounds R]`, or
 * `bun run bench sse [--quick]`.
 */
import { Elysia } from "elysia";
import { readdirSync, readFileSync } from "node:fs";
import { median, NO_RATE_LIMITS, percentile, tempDir, type Result } from "./lib.ts";

const KEY = "bench-key-0123456789abcdef";
const HOST = "127.0.0.1";
const now = () => performance.timeOrigin + performance.now();
const MARK = /bench-mark-(\d+)\./g;

interface Options {
  clients: number;
  sessions: number;
  events: number;
  rounds: number;
  /** Whole benchmark, connecting included. */
  timeoutMs: number;
}

interface ServerStats {
  rss: number;
  heapSize: number;
  fds: number;
  /** Agentry only: live-event listeners registered (one per waiting SSE stream). */
  listeners?: number;
}

// ---------------------------------------------------------------------------------------------------
// Child process plumbing: request/reply over Bun's IPC channel, plus unsolicited notes.

type Message = { id?: number; type?: string; cmd?: string; [k: string]: any };

class Child {
  readonly proc: ReturnType<typeof Bun.spawn>;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (m: Message) => void; reject: (e: Error) => void }>();
  private readonly notes: Message[] = [];
  private readonly watchers = new Set<() => void>();
  readonly exited: Promise<number>;

  constructor(readonly role: string, args: string[]) {
    // Raise the soft open-files limit to the hard one for the child (a no-op when they are equal).
    // BENCH_SSE_SERVER_FLAGS passes Bun flags to the Agentry server child, e.g. "--cpu-prof-md --cpu-prof-dir=/tmp/prof".
    const flags = role === "agentry-server" ? (process.env.BENCH_SSE_SERVER_FLAGS ?? "").split(" ").filter(Boolean) : [];
    this.proc = Bun.spawn(["sh", "-c", 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"', process.execPath, ...flags, import.meta.path, "--role", role, ...args], {
      stdin: "ignore", stdout: "inherit", stderr: "inherit",
      ipc: (m: Message) => this.onMessage(m),
    });
    live.add(this);
    this.exited = this.proc.exited.then((code) => {
      live.delete(this);
      for (const p of this.pending.values()) p.reject(new Error(`${role} exited (${code})`));
      this.pending.clear();
      for (const w of this.watchers) w();
      return code;
    });
  }

  private onMessage(m: Message) {
    if (m.id !== undefined && this.pending.has(m.id)) {
      const p = this.pending.get(m.id)!;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m);
      else p.reject(new Error(`${this.role}: ${m.error}`));
      return;
    }
    this.notes.push(m);
    for (const w of this.watchers) w();
  }

  request(cmd: string, body: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<Message> {
    const id = this.nextId++;
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.role}: no reply to ${cmd} in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (m) => (clearTimeout(timer), resolve(m)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      this.proc.send({ ...body, cmd, id });
    });
  }

  /** The first unsolicited message matching `match` (taken off the queue), or undefined after `timeoutMs`. */
  async note(match: (m: Message) => boolean, timeoutMs: number): Promise<Message | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.notes.findIndex(match);
      if (i >= 0) return this.notes.splice(i, 1)[0];
      const left = deadline - Date.now();
      if (left <= 0 || this.proc.exitCode !== null) return undefined;
      await new Promise<void>((resolve) => {
        const done = () => (clearTimeout(timer), this.watchers.delete(done), resolve());
        const timer = setTimeout(done, left);
        this.watchers.add(done);
      });
    }
  }

  /** Asks the child to stop; kills it if it has not exited in `timeoutMs`. */
  async stop(timeoutMs = 20_000): Promise<void> {
    if (this.proc.exitCode !== null) return;
    await this.request("stop", {}, timeoutMs).catch(() => {});
    const exited = await Promise.race([this.exited.then(() => true), Bun.sleep(timeoutMs).then(() => false)]);
    if (!exited) {
      console.error(`  ${this.role} did not exit; killing it`);
      this.proc.kill("SIGKILL");
      await this.exited;
    }
  }
}

const live = new Set<Child>();

/** Child side: answers `cmd` requests with `handlers`. */
function serve(handlers: Record<string, (m: Message) => Promise<Record<string, unknown>> | Record<string, unknown>>) {
  process.on("message", async (m: Message) => {
    try {
      const handler = handlers[m.cmd!];
      if (!handler) throw new Error(`unknown command ${m.cmd}`);
      process.send!({ id: m.id, ok: true, ...(await handler(m)) });
    } catch (err) {
      process.send!({ id: m.id, ok: false, error: String((err as Error)?.stack ?? err) });
    }
  });
  // The conductor went away: do not linger.
  process.on("disconnect", () => process.exit(1));
}

function openFilesLimit(): number {
  const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"));
  return Number(line?.split(/\s+/)[3] ?? Infinity);
}

function stats(extra: Partial<ServerStats> = {}): ServerStats {
  Bun.gc(true);
  const heap = process.memoryUsage();
  return { rss: heap.rss, heapSize: heap.heapTotal, fds: readdirSync("/proc/self/fd").length, ...extra };
}

// ---------------------------------------------------------------------------------------------------
// Servers.

async function agentryServerMain() {
  const { loadConfig } = await import("../src/config.ts");
  const { silentLogger } = await import("../src/core/logger.ts");
  const { startServer } = await import("../src/main.ts");
  const t = tempDir("sse");
  const server = await startServer(loadConfig({
    PORT: "0", HOST, DATA_DIR: t.dir, API_KEY: KEY, SQLITE_SYNCHRONOUS: "normal", SANDBOX_CHUNK_DELAY_MS: "0", SHUTDOWN_TIMEOUT_MS: "3000", ...NO_RATE_LIMITS,
  }), silentLogger);
  const listeners = () => {
    let n = 0;
    for (const set of ((server.ctx.live as any).listeners as Map<string, Set<unknown>>).values()) n += set.size;
    return n;
  };
  serve({
    stats: () => ({ ...stats({ listeners: listeners() }) }),
    stop: async () => {
      await server.shutdown("bench");
      t.remove();
      setTimeout(() => process.exit(0), 10);
      return {};
    },
  });
  process.send!({ type: "listening", port: server.port, openFiles: openFilesLimit() });
}

async function bareServerMain() {
  const encoder = new TextEncoder();
  const streams = new Set<ReadableStreamDefaultController<Uint8Array>>();
  // A ~280-byte frame, near Agentry's asset.registered (~320 bytes).
  const padding = "x".repeat(200);
  const app = new Elysia()
    .get("/stream", () => {
      let self: ReadableStreamDefaultController<Uint8Array>;
      return new Response(new ReadableStream<Uint8Array>({
        start(controller) {
          self = controller;
          streams.add(controller);
          controller.enqueue(encoder.encode("retry: 1000\n\n"));
        },
        cancel() {
          streams.delete(self);
        },
      }), { headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" } });
    })
    .post("/publish/:mark", ({ params }) => {
      const chunk = encoder.encode(`event: bench\ndata: ${JSON.stringify({ url: `https://example.com/bench-mark-${params.mark}.png`, padding })}\n\n`);
      for (const c of streams) {
        try {
          c.enqueue(chunk);
        } catch {
          streams.delete(c);
        }
      }
      return new Response(null, { status: 204 });
    })
    .listen({ port: 0, hostname: HOST });
  serve({
    stats: () => ({ ...stats() }),
    stop: async () => {
      await app.stop(true);
      setTimeout(() => process.exit(0), 10);
      return {};
    },
  });
  process.send!({ type: "listening", port: app.server!.port, openFiles: openFilesLimit() });
}

// ---------------------------------------------------------------------------------------------------
// Clients.

async function clientsMain(args: Map<string, string>) {
  const port = Number(args.get("port"));
  const paths = args.get("paths")!.split(",");
  const n = Number(args.get("n"));
  const key = args.get("key") ?? "";
  const batch = 250;
  if (openFilesLimit() < n + 64) throw new Error(`open-files limit ${openFilesLimit()} is too low for ${n} clients`);

  interface Conn { i: number; socket?: Bun.Socket<undefined>; text: string; ready: boolean; done?: (ok: boolean, why?: string) => void; closed: boolean }
  const conns: Conn[] = [];
  const times = new Map<number, Float64Array>();
  const counts = new Map<number, number>();
  let connected = 0;
  let droppedAfterReady = 0;
  const failures = new Map<string, number>();
  const fail = (why: string) => failures.set(why, (failures.get(why) ?? 0) + 1);

  const onEvent = (c: Conn, t: number, text: string) => {
    for (const m of text.matchAll(MARK)) {
      const mark = Number(m[1]);
      let arr = times.get(mark);
      if (!arr) times.set(mark, (arr = new Float64Array(n).fill(NaN)));
      if (!Number.isNaN(arr[c.i]!)) continue;
      arr[c.i] = t;
      const count = (counts.get(mark) ?? 0) + 1;
      counts.set(mark, count);
      if (count === connected) process.send!({ type: "all", mark });
    }
  };

  const connect = (c: Conn, path: string) => new Promise<void>((resolve) => {
    const timer = setTimeout(() => c.done?.(false, "timeout"), 30_000);
    c.done = (ok, why) => {
      c.done = undefined;
      clearTimeout(timer);
      if (ok) connected++;
      else {
        fail(why ?? "failed");
        c.socket?.end();
      }
      resolve();
    };
    Bun.connect({
      hostname: HOST, port,
      socket: {
        open(socket) {
          c.socket = socket;
          socket.write(`GET ${path} HTTP/1.1\r\nHost: ${HOST}:${port}\r\nX-API-Key: ${key}\r\nAccept: text/event-stream\r\n\r\n`);
        },
        data(_socket, chunk) {
          const t = now();
          const text = c.text + chunk.toString("latin1");
          if (!c.ready) {
            if (!text.startsWith("HTTP/1.1 200")) {
              if (text.includes("\r\n")) c.done?.(false, text.split("\r\n")[0]!);
              else c.text = text;
              return;
            }
            if (!text.includes("retry:")) {
              c.text = text;
              return;
            }
            c.ready = true;
            c.done?.(true);
          }
          onEvent(c, t, text);
          // Keep a tail, so a mark split across reads is still seen (duplicates are ignored).
          c.text = text.slice(-40);
        },
        close() {
          c.closed = true;
          if (c.ready) droppedAfterReady++;
          c.done?.(false, "closed before ready");
        },
        error(_socket, err) {
          c.done?.(false, `error: ${err.message}`);
        },
        connectError(_socket, err) {
          c.done?.(false, `connect error: ${err.message}`);
        },
      },
    }).catch((err) => c.done?.(false, `connect error: ${(err as Error).message}`));
  });

  serve({
    clock: () => ({ t: now() }),
    report: () => ({
      marks: Object.fromEntries([...times].map(([mark, arr]) => [mark, Array.from(arr)])),
      droppedAfterReady,
    }),
    stop: async () => {
      for (const c of conns) if (!c.closed) c.socket?.end();
      const deadline = Date.now() + 10_000;
      while (conns.some((c) => c.socket && !c.closed) && Date.now() < deadline) await Bun.sleep(50);
      const open = conns.filter((c) => c.socket && !c.closed).length;
      setTimeout(() => process.exit(0), 10);
      return { open };
    },
  });
  const started = performance.now();
  for (let from = 0; from < n; from += batch) {
    const group: Promise<void>[] = [];
    for (let i = from; i < Math.min(n, from + batch); i++) {
      const c: Conn = { i, text: "", ready: false, closed: false };
      conns.push(c);
      group.push(connect(c, paths[i % paths.length]!));
    }
    await Promise.all(group);
  }
  const connectMs = performance.now() - started;

  process.send!({ type: "connected", connected, failures: Object.fromEntries(failures), connectMs });
}

// ---------------------------------------------------------------------------------------------------
// Conductor.

interface Measured {
  rssPerConnKiB: number;
  p50: number;
  p99: number;
  max: number;
  missing: number;
  before: ServerStats;
  withClients: ServerStats;
  afterClose: ServerStats;
  connectMs: number;
}

async function measure(kind: "agentry" | "bare", o: Options): Promise<Measured> {
  const server = new Child(`${kind}-server`, []);
  let clients: Child | undefined;
  try {
    const up = await server.note((m) => m.type === "listening", 60_000);
    if (!up) throw new Error(`${kind} server did not start`);
    const base = `http://${HOST}:${up.port}`;
    if (up.openFiles < o.clients + 256) throw new Error(`server open-files limit ${up.openFiles} is too low for ${o.clients} clients`);
    const headers = { "x-api-key": KEY, "content-type": "application/json" };
    const post = async (path: string, body?: unknown) => {
      const res = await fetch(base + path, { method: "POST", headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
      if (res.status >= 300) throw new Error(`${path}: ${res.status} ${await res.text()}`);
      return res.status === 204 ? undefined : res.json() as Promise<any>;
    };

    // What the clients subscribe to, and how one event is sent to all of them.
    let paths: string[];
    let send: (mark: number) => Promise<unknown>;
    if (kind === "agentry") {
      const sessions: string[] = [];
      for (let s = 0; s < o.sessions; s++) sessions.push((await post("/v1/sessions", { user_id: "sse-bench" })).id);
      paths = sessions.map((id) => `/v1/sessions/${id}/stream`);
      send = (mark) => Promise.all(sessions.map((id) => post(`/v1/sessions/${id}/assets`, { url: `https://example.com/bench-mark-${mark}.png`, kind: "image" })));
    } else {
      paths = ["/stream"];
      send = (mark) => post(`/publish/${mark}`);
    }

    // Warm the code paths (one stream, one event) so one-time costs are not charged to the connections.
    {
      const warmPath = kind === "agentry" ? `/v1/sessions/${(await post("/v1/sessions", { user_id: "sse-bench-warmup" })).id}/stream` : "/stream";
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), 15_000);
      const res = await fetch(base + warmPath, { headers, signal: ac.signal });
      const reader = res.body!.getReader();
      await reader.read();
      if (kind === "agentry") await post(`${warmPath.slice(0, -"/stream".length)}/assets`, { url: "https://example.com/warmup.png", kind: "image" });
      else await post("/publish/warmup");
      let seen = "";
      while (!seen.includes("warmup")) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += new TextDecoder().decode(value);
      }
      clearTimeout(timer);
      ac.abort();
      await Bun.sleep(500);
    }

    const before = (await server.request("stats")) as unknown as ServerStats;
    clients = new Child("clients", ["--port", String(up.port), "--paths", paths.join(","), "--n", String(o.clients), "--key", KEY]);
    const ready = await clients.note((m) => m.type === "connected", Math.max(60_000, o.clients * 20));
    if (!ready) throw new Error(`${kind}: the clients did not connect in time`);
    const failed = Object.values(ready.failures as Record<string, number>).reduce((a, b) => a + b, 0);
    console.log(`  ${kind}: ${ready.connected} clients connected in ${(ready.connectMs / 1000).toFixed(1)} s${failed ? `, ${failed} failed: ${JSON.stringify(ready.failures)}` : ""}`);
    if (ready.connected === 0) throw new Error(`${kind}: no client connected`);
    await Bun.sleep(1000);
    const withClients = (await server.request("stats")) as unknown as ServerStats;

    // Clock offset between the clients process and this one, from the ping-pong with the least delay.
    let offset = 0;
    let bestRtt = Infinity;
    for (let i = 0; i < 10; i++) {
      const a = now();
      const { t } = await clients.request("clock");
      const b = now();
      if (b - a < bestRtt) {
        bestRtt = b - a;
        offset = t - (a + b) / 2;
      }
    }

    // Events: one warm-up (mark 0, not counted), then o.events, each after every client has the last.
    const sent = new Map<number, number>();
    for (let mark = 0; mark <= o.events; mark++) {
      const t = now();
      await send(mark);
      sent.set(mark, t);
      const all = await clients.note((m) => m.type === "all" && m.mark === mark, 30_000);
      if (!all) console.log(`  ${kind}: event ${mark} did not reach every client in 30 s`);
      await Bun.sleep(200);
    }
    const report = await clients.request("report", {}, 60_000);
    const latencies: number[] = [];
    let missing = 0;
    for (let mark = 1; mark <= o.events; mark++) {
      const arr = (report.marks[mark] as number[] | undefined) ?? [];
      for (let i = 0; i < o.clients; i++) {
        const r = arr[i];
        if (r === undefined || r === null || Number.isNaN(r)) missing++;
        else latencies.push(r - offset - sent.get(mark)!);
      }
    }
    // Connections that failed to connect count as missing here too; report them apart.
    missing -= failed * o.events;
    if (report.droppedAfterReady) console.log(`  ${kind}: ${report.droppedAfterReady} connections closed by the server during the run`);
    if (missing) console.log(`  ${kind}: ${missing} (client, event) deliveries missing`);

    await clients.stop();
    clients = undefined;
    await Bun.sleep(1000);
    const afterClose = (await server.request("stats")) as unknown as ServerStats;
    const n = ready.connected as number;
    const kib = (x: number) => Math.round(x / 1024);
    console.log(`  ${kind}: server RSS ${kib(before.rss)} KiB before, ${kib(withClients.rss)} KiB with ${n} clients, ${kib(afterClose.rss)} KiB after they left; ` +
      `JS heap ${kib(before.heapSize)} → ${kib(withClients.heapSize)} KiB; fds ${before.fds} → ${withClients.fds} → ${afterClose.fds}` +
      (withClients.listeners !== undefined ? `; live listeners ${before.listeners} → ${withClients.listeners} → ${afterClose.listeners}` : "") +
      `; clock offset ${offset.toFixed(3)} ms (rtt ${bestRtt.toFixed(3)} ms)`);
    return {
      rssPerConnKiB: (withClients.rss - before.rss) / n / 1024,
      p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: Math.max(...latencies),
      missing, before, withClients, afterClose, connectMs: ready.connectMs,
    };
  } finally {
    await clients?.stop();
    await server.stop();
  }
}

export async function sseBenchmarks(quick: boolean, overrides: Partial<Options> = {}): Promise<Result[]> {
  const o: Options = { clients: quick ? 500 : 10_000, sessions: 1, events: 10, rounds: 1, timeoutMs: quick ? 180_000 : 900_000, ...overrides };
  const watchdog = setTimeout(() => {
    console.error(`SSE benchmark: over its ${o.timeoutMs / 1000} s limit; stopping`);
    for (const c of live) c.proc.kill("SIGKILL");
    process.exit(1);
  }, o.timeoutMs);
  try {
    const ours: Measured[] = [];
    const bare: Measured[] = [];
    for (let r = 0; r < o.rounds; r++) {
      bare.push(await measure("bare", o));
      ours.push(await measure("agentry", o));
    }
    const m = (xs: Measured[], f: (x: Measured) => number) => median(xs.map(f));
    const n = o.clients.toLocaleString("en-US");
    const where = o.sessions === 1 ? "1 session" : `${o.sessions} sessions`;
    return [
      { name: `SSE server RSS per connection, ${n} clients`, unit: "KiB", value: m(ours, (x) => x.rssPerConnKiB), baselineName: "bare Elysia SSE", baseline: m(bare, (x) => x.rssPerConnKiB) },
      { name: `SSE fan-out p50, ${n} clients on ${where}`, unit: "ms", value: m(ours, (x) => x.p50), baselineName: "bare Elysia SSE", baseline: m(bare, (x) => x.p50) },
      { name: `SSE fan-out p99, ${n} clients on ${where}`, unit: "ms", value: m(ours, (x) => x.p99), baselineName: "bare Elysia SSE", baseline: m(bare, (x) => x.p99) },
    ];
  } finally {
    clearTimeout(watchdog);
  }
}

// ---------------------------------------------------------------------------------------------------

if (import.meta.main) {
  const argv = process.argv.slice(2);
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) if (argv[i]!.startsWith("--") && argv[i + 1] !== undefined && !argv[i + 1]!.startsWith("--")) args.set(argv[i]!.slice(2), argv[++i]!);
  const role = args.get("role");
  if (role === "agentry-server") await agentryServerMain();
  else if (role === "bare-server") await bareServerMain();
  else if (role === "clients") await clientsMain(args);
  else {
    const num = (k: string) => (args.has(k) ? Number(args.get(k)) : undefined);
    const overrides = Object.fromEntries(Object.entries({ clients: num("clients"), sessions: num("sessions"), events: num("events"), rounds: num("rounds") }).filter(([, v]) => v !== undefined));
    const { printTable } = await import("./lib.ts");
    printTable(await sseBenchmarks(argv.includes("--quick"), overrides));
    process.exit(0);
  }
}
