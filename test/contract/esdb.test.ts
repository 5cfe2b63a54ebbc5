/**
 * The esdb adapter against EventStoreDB's gRPC protocol: always against the protocol-level test server
 * (both append paths: BatchAppend and Append), and against a real server when
 * EVENTSTORE_CONNECTION_STRING is set.
 */
import { EsdbEventStore } from "../../src/eventstore/adapters/esdb.ts";
import { spawnEsdbTestServer } from "../support/esdbTestServer.ts";
import { eventStoreContract } from "./eventStore.contract.ts";

for (const batchAppend of [true, false]) {
  eventStoreContract(`esdb over gRPC (test server, ${batchAppend ? "BatchAppend" : "Append"})`, async () => {
    const server = await spawnEsdbTestServer({ batchAppend });
    const store = new EsdbEventStore({ connectionString: server.connectionString });
    return {
      store,
      cleanup: async () => {
        await store.close();
        await server.stop();
      },
    };
  });
}

const real = process.env.EVENTSTORE_CONNECTION_STRING;
if (real) {
  eventStoreContract("esdb (real server from EVENTSTORE_CONNECTION_STRING)", async () => {
    const store = new EsdbEventStore({ connectionString: real });
    return { store, cleanup: () => store.close() };
  });
}
