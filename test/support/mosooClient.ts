/**
 * A Mosoo client as its doc shows one (`Authorization: Bearer`, JSON bodies) for the tests of the
 * Mosoo surface that drive it without the doc-quoting helpers of test/compat/mosoo.test.ts.
 */
export const mosooBase = (server: { url: string }): string => `${server.url}/compat/mosoo/api/v1`;

/** `call(method, path, body?)` against the surface as the server's key; answers `{status, body}` (body parsed when JSON). */
export function mosooClient(server: { url: string; apiKey: string }) {
  return async (method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> => {
    const res = await fetch(`${mosooBase(server)}${path}`, {
      method, headers: { Authorization: `Bearer ${server.apiKey}`, ...(body !== undefined ? { "Content-Type": "application/json" } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    let parsed: any = text;
    try { parsed = JSON.parse(text); } catch { /* not JSON */ }
    return { status: res.status, body: parsed };
  };
}
