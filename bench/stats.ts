// Small helpers the benchmark scripts share: bounded integer settings from the environment, percentiles.

/** `process.env[name]` as a number within [min, max]; `fallback` when unset or not a number. */
export const envInt = (name: string, fallback: number, min: number, max: number): number =>
  Math.min(Math.max(Number(process.env[name] ?? fallback) || fallback, min), max);

/** The p-th percentile (nearest rank) of ascending `sorted`; NaN when empty. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
