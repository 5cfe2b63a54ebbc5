/** The streaming multipart reader: bodies Bun's own FormData encoder wrote, fed in chunks of every size; and malformed bodies. */
import { describe, expect, test } from "bun:test";
import { ValidationError } from "../../src/core/errors.ts";
import { boundaryOf, multipartParts } from "../../src/http/multipart.ts";

const LIMITS = { maxParts: 10, maxHeaderBytes: 4096 };

async function encode(form: FormData): Promise<{ bytes: Uint8Array; boundary: string }> {
  const res = new Response(form);
  // Read before the body: Bun sets the content type (with its boundary) on the headers lazily.
  const boundary = boundaryOf(res.headers.get("content-type"));
  return { bytes: new Uint8Array(await res.arrayBuffer()), boundary };
}

async function* chunked(bytes: Uint8Array, size: number) {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, Math.min(bytes.length, i + size));
}

async function readAll(bytes: Uint8Array, boundary: string, size: number) {
  const out: Array<{ name: string; filename: string | null; contentType: string | null; body: Buffer }> = [];
  for await (const part of multipartParts(chunked(bytes, size), boundary, LIMITS)) {
    const chunks: Uint8Array[] = [];
    for await (const c of part.body) chunks.push(Buffer.from(c));
    out.push({ name: part.name, filename: part.filename, contentType: part.contentType, body: Buffer.concat(chunks) });
  }
  return out;
}

describe("multipart reader", () => {
  test("reads fields and files exactly, whatever the chunking", async () => {
    const binary = new Uint8Array(70_000).map((_, i) => (i * 7 + 13) % 256);
    // Bytes that look like a delimiter without being one.
    binary.set(new TextEncoder().encode("\r\n--not-the-boundary\r\n"), 1000);
    const form = new FormData();
    form.append("name", "report – été.txt");
    form.append("file", new File([binary], "data.bin", { type: "application/x-test" }));
    form.append("note", "");
    const { bytes, boundary } = await encode(form);
    for (const size of [1, 2, 3, 7, 64, 1000, 65_536, bytes.length]) {
      const parts = await readAll(bytes, boundary, size);
      expect(parts.map((p) => p.name)).toEqual(["name", "file", "note"]);
      expect(parts[0]!.body.toString("utf8")).toBe("report – été.txt");
      expect(parts[1]!.filename).toBe("data.bin");
      expect(parts[1]!.contentType).toBe("application/x-test");
      expect(Buffer.compare(parts[1]!.body, Buffer.from(binary))).toBe(0);
      expect(parts[2]!.body.length).toBe(0);
    }
  });

  test("a part the consumer skips is read past", async () => {
    const form = new FormData();
    form.append("skip", new File(["x".repeat(10_000)], "a.txt", { type: "text/plain" }));
    form.append("keep", "kept");
    const { bytes, boundary } = await encode(form);
    const seen: string[] = [];
    for await (const part of multipartParts(chunked(bytes, 100), boundary, LIMITS)) {
      if (part.name === "keep") for await (const c of part.body) seen.push(Buffer.from(c).toString());
    }
    expect(seen.join("")).toBe("kept");
  });

  const malformed: Array<[string, string]> = [
    ["no boundary at all", "just some text"],
    ["truncated inside a part", "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nabc"],
    ["no closing delimiter", "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nabc\r\n--B"],
    ["no content-disposition", "--B\r\nContent-Type: text/plain\r\n\r\nabc\r\n--B--\r\n"],
    ["no field name", "--B\r\nContent-Disposition: form-data; filename=\"x\"\r\n\r\nabc\r\n--B--\r\n"],
    ["headers never end", `--B\r\nContent-Disposition: form-data; name="a"\r\nX-Long: ${"y".repeat(5000)}`],
    ["text after a boundary", "--B junk\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nabc\r\n--B--\r\n"],
  ];
  for (const [why, body] of malformed) {
    test(`refuses a body with ${why} as a 400`, async () => {
      const err = await readAll(new TextEncoder().encode(body), "B", 5).catch((e) => e);
      expect(err).toBeInstanceOf(ValidationError);
      expect(err.status).toBe(400);
    });
  }

  test("refuses more parts than the limit", async () => {
    const form = new FormData();
    for (let i = 0; i < 11; i++) form.append(`f${i}`, "v");
    const { bytes, boundary } = await encode(form);
    await expect(readAll(bytes, boundary, 50)).rejects.toBeInstanceOf(ValidationError);
  });

  test("a content type without a boundary is a 400", () => {
    expect(() => boundaryOf("multipart/form-data")).toThrow(ValidationError);
    expect(boundaryOf('multipart/form-data; boundary="a b"')).toBe("a b");
  });
});
