/** What a file's first bytes say it is: the signatures of the image types and PDF, unit by unit. */
import { describe, expect, test } from "bun:test";
import { contentMatches, isSniffed, sniffContentType } from "../../src/domain/file/sniff.ts";
import { makePdf, PNG_1X1 } from "../support/pdf.ts";

const bytes = (...parts: Array<string | number[]>) => Uint8Array.from(parts.flatMap((p) => (typeof p === "string" ? [...Buffer.from(p, "latin1")] : p)));

describe("content sniffing", () => {
  test("each checked type's signature matches; anything else declared as it does not", () => {
    const html = bytes("<!doctype html><script>alert(1)</script>");
    const cases: Array<[string, Uint8Array]> = [
      ["image/png", PNG_1X1],
      ["image/jpeg", bytes([0xff, 0xd8, 0xff, 0xe0], "\0\x10JFIF")],
      ["image/gif", bytes("GIF89a\x01\0\x01\0")],
      ["image/gif", bytes("GIF87a\x01\0\x01\0")],
      ["image/webp", bytes("RIFF", [0x24, 0, 0, 0], "WEBPVP8 ")],
      ["application/pdf", makePdf("hello")],
      ["application/pdf", bytes("\n\n%PDF-1.7\n")], // a little junk before the header, as readers accept
    ];
    for (const [type, content] of cases) {
      expect({ type, ok: contentMatches(type, content) }).toEqual({ type, ok: true });
      expect({ type, html: contentMatches(type, html) }).toEqual({ type, html: false });
      expect({ type, empty: contentMatches(type, new Uint8Array()) }).toEqual({ type, empty: false });
    }
    // Near misses.
    expect(contentMatches("image/png", PNG_1X1.slice(0, 7))).toBe(false);
    expect(contentMatches("image/webp", bytes("RIFF", [0, 0, 0, 0], "WAVE"))).toBe(false);
    expect(contentMatches("image/gif", bytes("GIF88a"))).toBe(false);
    expect(contentMatches("application/pdf", bytes(" ".repeat(1024), "%PDF-1.4"))).toBe(false);
    expect(contentMatches("image/jpeg", PNG_1X1)).toBe(false);
  });

  test("other types are taken as declared", () => {
    for (const type of ["text/plain", "text/html", "application/json", "image/svg+xml", "application/octet-stream"]) {
      expect(isSniffed(type)).toBe(false);
      expect(contentMatches(type, bytes([0, 1, 2]))).toBe(true);
    }
  });
});

describe("typing a file by its bytes alone", () => {
  test("images and PDFs by their signature, text as text, anything else nothing", () => {
    expect(sniffContentType(PNG_1X1)).toBe("image/png");
    expect(sniffContentType(bytes([0xff, 0xd8, 0xff, 0xe0], "\0\x10JFIF"))).toBe("image/jpeg");
    expect(sniffContentType(makePdf("hello"))).toBe("application/pdf");
    expect(sniffContentType(bytes("Hallo Welt\nzweite Zeile\t."))).toBe("text/plain");
    expect(sniffContentType(Buffer.from("Grüße, 日本語"))).toBe("text/plain");
    expect(sniffContentType(bytes([0, 1, 2, 3, 255]))).toBeNull();
    expect(sniffContentType(new Uint8Array())).toBeNull();
  });

  test("a note that mentions a signature is text, not the format it names", () => {
    expect(sniffContentType(bytes("GIF89a is an image format from 1989"))).toBe("text/plain");
    expect(sniffContentType(bytes("Notes: a PDF file begins with %PDF-1.7"))).toBe("text/plain");
    expect(sniffContentType(bytes("RIFF....WEBP is a container"))).toBe("text/plain");
  });
});
