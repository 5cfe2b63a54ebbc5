/** A thin client for the v1 API in tests: real HTTP against a real port, with the app's key. */
export const TEST_KEY = "test-key-0123456789abcdef";

export interface Api {
  base: string;
  get(path: string, headers?: Record<string, string>): Promise<{ status: number; body: any; headers: Headers }>;
  post(path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any; headers: Headers }>;
  patch(path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any; headers: Headers }>;
  put(path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any; headers: Headers }>;
  del(path: string, headers?: Record<string, string>): Promise<{ status: number; body: any; headers: Headers }>;
  /** Polls a job's events from `since` until it is done; returns every event seen. */
  pollUntilDone(jobId: string, timeoutMs?: number): Promise<any[]>;
  /** Polls until the job has streamed some text (a turn caught mid-stream). */
  waitForText(jobId: string, timeoutMs?: number): Promise<void>;
  /** Polls a job until its status is one of `statuses`. */
  waitForStatus(jobId: string, statuses: string[], timeoutMs?: number): Promise<any>;
}

export function api(base: string, key = TEST_KEY): Api {
  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(base + path, {
      method,
      headers: { ...(key ? { "x-api-key": key } : {}), ...(body !== undefined ? { "content-type": "application/json" } : {}), ...headers },
      ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON */
    }
    return { status: res.status, body: parsed as any, headers: res.headers };
  };
  const client: Api = {
    base,
    get: (p, h) => call("GET", p, undefined, h),
    post: (p, b, h) => call("POST", p, b, h),
    patch: (p, b, h) => call("PATCH", p, b, h),
    put: (p, b, h) => call("PUT", p, b, h),
    del: (p, h) => call("DELETE", p, undefined, h),
    async pollUntilDone(jobId, timeoutMs = 20_000) {
      const events: any[] = [];
      let cursor = 0;
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const r = await client.get(`/v1/jobs/${jobId}/events?since=${cursor}&wait=2`);
        if (r.status !== 200) throw new Error(`poll failed: ${r.status} ${JSON.stringify(r.body)}`);
        events.push(...r.body.events);
        cursor = r.body.cursor;
        if (r.body.done) return events;
      }
      throw new Error(`job ${jobId} did not finish; saw ${events.map((e) => e.type).join(", ")}`);
    },
    async waitForText(jobId, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const r = await client.get(`/v1/jobs/${jobId}/events?since=0`);
        if (r.body.events?.some((e: any) => e.type === "text")) return;
        await Bun.sleep(20);
      }
      throw new Error(`job ${jobId} streamed no text in time`);
    },
    async waitForStatus(jobId, statuses, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      let last: any;
      while (Date.now() < deadline) {
        last = (await client.get(`/v1/jobs/${jobId}`)).body;
        if (statuses.includes(last.status)) return last;
        await client.get(`/v1/jobs/${jobId}/events?since=1000000&wait=0.2`);
      }
      throw new Error(`job ${jobId} stayed ${last?.status}`);
    },
  };
  return client;
}

/** Reads an SSE response until `stop` says so; returns the parsed events with their ids. */
export async function readSse(
  res: Response,
  stop: (events: Array<{ id: number | null; event: string; data: any }>) => boolean,
): Promise<Array<{ id: number | null; event: string; data: any }>> {
  const events: Array<{ id: number | null; event: string; data: any }> = [];
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    while (!stop(events)) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let idx: number;
      while ((idx = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, idx);
        buffer = buffer.slice(idx + 2);
        let id: number | null = null;
        let event = "message";
        const data: string[] = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("id: ")) id = Number(line.slice(4));
          else if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
        }
        if (data.length === 0) continue;
        const raw = data.join("\n");
        let parsed: unknown = raw;
        try {
          parsed = JSON.parse(raw);
        } catch {
          /* [DONE] */
        }
        events.push({ id, event, data: parsed });
        if (stop(events)) break;
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return events;
}
