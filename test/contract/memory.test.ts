import { MemoryEventStore } from "../../src/eventstore/adapters/memory.ts";
import { eventStoreContract } from "./eventStore.contract.ts";

eventStoreContract("memory", async () => {
  const store = new MemoryEventStore();
  return { store, cleanup: () => store.close() };
});
