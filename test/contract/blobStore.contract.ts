/**
 * The blob-store port's contract, run against every adapter (local disk, and S3 through a local S3
 * server). `peek` reads what the backing storage itself holds under a hash, without the adapter, so
 * an adapter that only pretends to store fails.
 */
import { describe, expect, test } from "bun:test";
import { BlobTooLargeError, type BlobStore } from "../../src/blobs/port.ts";
import { chunksOf } from "../../src/blobs/staging.ts";

export interface BlobStoreHarness {
  store: BlobStore;
  /** The bytes stored for `sha256`, read from the backing storage directly; null when absent. */
  peek(sha256: string): Promise<Uint8Array | null>;
  /** How many staging copies are left behind. */
  stagingLeft(): number;
}

const sha = (bytes: Uint8Array | string) => new Bun.CryptoHasher("sha256").update(bytes).digest("hex");

async function* pieces(total: number, piece = 64 * 1024): AsyncIterable<Uint8Array> {
  for (let sent = 0; sent < total; sent += piece) yield new Uint8Array(Math.min(piece, total - sent)).fill(sent / piece % 251);
}

export function blobStoreContract(name: string, harness: () => BlobStoreHarness) {
  describe(`blob store contract: ${name}`, () => {
    test("a staged blob is invisible until committed; then it reads back exactly, under its SHA-256", async () => {
      const { store, peek } = harness();
      const content = `hello ${name} ${crypto.randomUUID()}`;
      const staged = await store.stage(chunksOf(content));
      expect(staged.sha256).toBe(sha(content));
      expect(staged.size).toBe(Buffer.byteLength(content));
      expect(await store.has(staged.sha256)).toBe(false);
      expect(await store.open(staged.sha256)).toBeNull();
      await store.commit(staged);
      expect(await store.has(staged.sha256)).toBe(true);
      expect(await (await store.open(staged.sha256))!.text()).toBe(content);
      expect(new TextDecoder().decode((await peek(staged.sha256))!)).toBe(content);
    });

    test("bytes streamed in many chunks hash and store whole; ranges read what they say", async () => {
      const { store, peek } = harness();
      const staged = await store.stage(pieces(300_000));
      const stored = (await peek(staged.sha256)) ?? null;
      expect(stored).toBeNull();
      await store.commit(staged);
      const blob = (await store.open(staged.sha256))!;
      const bytes = new Uint8Array(await blob.arrayBuffer());
      expect(bytes.byteLength).toBe(300_000);
      expect(sha(bytes)).toBe(staged.sha256);
      expect(new Uint8Array(await blob.slice(65_536, 65_540).arrayBuffer())).toEqual(new Uint8Array(4).fill(1));
    });

    test("identical content is stored once; committing it again changes nothing and leaves no staging copy", async () => {
      const { store, stagingLeft } = harness();
      const content = `same bytes ${crypto.randomUUID()}`;
      const a = await store.stage(chunksOf(content));
      const b = await store.stage(chunksOf(content));
      await store.commit(a);
      await store.commit(b);
      expect(a.sha256).toBe(b.sha256);
      expect(await (await store.open(a.sha256))!.text()).toBe(content);
      expect(stagingLeft()).toBe(0);
    });

    test("past maxBytes staging stops reading, keeps nothing, and says so", async () => {
      const { store, stagingLeft } = harness();
      let pulled = 0;
      async function* counted() {
        for await (const c of pieces(10 * 64 * 1024)) {
          pulled++;
          yield c;
        }
      }
      const err = await store.stage(counted(), { maxBytes: 100_000 }).catch((e) => e);
      expect(err).toBeInstanceOf(BlobTooLargeError);
      expect(pulled).toBe(2); // the second piece crossed the limit; nothing more was read
      expect(stagingLeft()).toBe(0);
    });

    test("a discarded staging copy is gone and never readable", async () => {
      const { store, stagingLeft } = harness();
      const staged = await store.stage(chunksOf(`discard me ${crypto.randomUUID()}`));
      await store.discard(staged);
      expect(await store.has(staged.sha256)).toBe(false);
      expect(stagingLeft()).toBe(0);
    });

    test("park hides a blob; restore brings it back; purge removes it for good", async () => {
      const { store, peek } = harness();
      const content = `park me ${crypto.randomUUID()}`;
      const staged = await store.stage(chunksOf(content));
      await store.commit(staged);
      const parked = await store.park(staged.sha256);
      expect(parked).not.toBeNull();
      expect(await store.has(staged.sha256)).toBe(false);
      expect(await peek(staged.sha256)).toBeNull();
      await store.restore(staged.sha256, parked!);
      expect(await (await store.open(staged.sha256))!.text()).toBe(content);

      const again = await store.park(staged.sha256);
      await store.purge(again!);
      expect(await store.has(staged.sha256)).toBe(false);
      expect(await peek(staged.sha256)).toBeNull();
      expect(await store.park(staged.sha256)).toBeNull();
    });

    test("restoring when the same bytes were stored again meanwhile keeps one copy", async () => {
      const { store } = harness();
      const content = `raced ${crypto.randomUUID()}`;
      await store.commit(await store.stage(chunksOf(content)));
      const parked = await store.park(sha(content));
      await store.commit(await store.stage(chunksOf(content)));
      await store.restore(sha(content), parked!);
      expect(await (await store.open(sha(content)))!.text()).toBe(content);
      // The parked copy is gone: purging it again is harmless.
      await store.purge(parked!);
      expect(await store.has(sha(content))).toBe(true);
    });

    test("parked copies are listed (all, or one blob's) until restored or purged", async () => {
      const { store } = harness();
      const a = `listed a ${crypto.randomUUID()}`;
      const b = `listed b ${crypto.randomUUID()}`;
      for (const c of [a, b]) await store.commit(await store.stage(chunksOf(c)));
      const parkedA = (await store.park(sha(a)))!;
      const parkedB = (await store.park(sha(b)))!;
      const all = await store.parkedCopies();
      expect(all).toEqual(expect.arrayContaining([{ sha256: sha(a), parked: parkedA }, { sha256: sha(b), parked: parkedB }]));
      expect(await store.parkedCopies(sha(a))).toEqual([{ sha256: sha(a), parked: parkedA }]);
      await store.restore(sha(a), parkedA);
      await store.purge(parkedB);
      const left = (await store.parkedCopies()).map((c) => c.sha256);
      expect(left).not.toContain(sha(a));
      expect(left).not.toContain(sha(b));
      expect(await store.parkedCopies(sha(a))).toEqual([]);
      // Restoring a copy another restorer already put back is harmless.
      const again = (await store.park(sha(a)))!;
      await store.restore(sha(a), again);
      await store.restore(sha(a), again);
      expect(await (await store.open(sha(a)))!.text()).toBe(a);
      await expect(store.parkedCopies("../x")).rejects.toThrow();
    });

    test("anything but a SHA-256 hex digest is refused as a name", async () => {
      const { store } = harness();
      await expect(store.has("../../etc/passwd")).rejects.toThrow();
      await expect(store.open("A".repeat(64))).rejects.toThrow();
    });
  });
}
