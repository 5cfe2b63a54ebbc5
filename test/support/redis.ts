/** Starts a real redis-server on a free loopback port for a test, and stops it. */
import Redis from "ioredis";

export interface RedisServer {
  url: string;
  port: number;
  stop(): Promise<void>;
  /** Kills the server and starts a fresh, empty one on the same port: Redis losing its data. */
  restartEmpty(): Promise<void>;
  /** Kills the server (its data is gone); `up()` starts an empty one on the same port. */
  down(): Promise<void>;
  up(): Promise<void>;
}

async function freePort(): Promise<number> {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

async function launch(port: number) {
  const proc = Bun.spawn(["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"], {
    stdout: "ignore", stderr: "pipe",
  });
  const client = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on("error", () => {});
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await client.connect();
      if ((await client.ping()) === "PONG") break;
    } catch {
      if (Date.now() > deadline) throw new Error(`redis-server did not start on port ${port}`);
      await Bun.sleep(50);
    }
  }
  client.disconnect();
  return proc;
}

export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  let proc = await launch(port);
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async stop() {
      proc.kill("SIGKILL");
      await proc.exited;
    },
    async restartEmpty() {
      proc.kill("SIGKILL");
      await proc.exited;
      proc = await launch(port);
    },
    async down() {
      proc.kill("SIGKILL");
      await proc.exited;
    },
    async up() {
      proc = await launch(port);
    },
  };
}
