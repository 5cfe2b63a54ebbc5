/** Small benchmark harness: every figure is measured next to its baseline, in the same run. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * The environment that turns rate limits off: benchmarks send far more than a client may (the
 * rate-limit benchmark, bench/ratelimit.ts, measures the limiter itself).
 */
export const NO_RATE_LIMITS = { RATE_LIMIT_PER_MINUTE: "0", RATE_LIMIT_HEAVY_PER_MINUTE: "0" } as const;

export interface Result {
  name: string;
  unit: string;
  value: number;
  baselineName?: string;
  baseline?: number;
  /** Ratio target (value / baseline), or an absolute target when there is no baseline. */
  target?: number;
}

/** Runs `op` `count` times (awaiting each) and returns operations per second. */
export async function rate(count: number, op: (i: number) => unknown): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const r = op(i);
    if (r instanceof Promise) await r;
  }
  return (count / (performance.now() - start)) * 1000;
}

/** Median of `rounds` measurements, alternating with the baseline so drift hits both alike. */
export async function compare(
  rounds: number,
  measure: () => Promise<number>,
  baseline: () => Promise<number>,
): Promise<{ value: number; baseline: number }> {
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < rounds; r++) {
    b.push(await baseline());
    a.push(await measure());
  }
  return { value: median(a), baseline: median(b) };
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((x, y) => x - y);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

export function tempDir(label: string): { dir: string; path: (name: string) => string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `agentry-bench-${label}-`));
  return { dir, path: (name) => join(dir, name), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

const fmt = (n: number) => (n >= 100 ? Math.round(n).toLocaleString("en-US") : n.toFixed(2));

export function printTable(results: Result[]): void {
  const rows = results.map((r) => {
    const ratio = r.baseline ? r.value / r.baseline : undefined;
    const verdict = r.target === undefined ? "" : (ratio ?? r.value) >= r.target ? "ok" : "BELOW TARGET";
    return [
      r.name,
      `${fmt(r.value)} ${r.unit}`,
      r.baselineName ? `${r.baselineName}: ${fmt(r.baseline!)} ${r.unit}` : "",
      ratio !== undefined ? ratio.toFixed(2) : "",
      r.target !== undefined ? (r.baseline ? `>= ${r.target}` : `>= ${fmt(r.target)} ${r.unit}`) : "",
      verdict,
    ];
  });
  const header = ["benchmark", "result", "baseline (same run)", "ratio", "target", ""];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const r of rows) console.log(line(r));
}
