// Slow test-bed steps (images, swarms, joins) are timed and printed with the results, never asserted:
// these machines are shared and noisy (see bench/ for measured goals).

/** A recorder: `timed(name, fn)` runs fn and keeps how long it took under `name`, in `timings`. */
export function stepTimer(): { timings: Record<string, number>; timed: <T>(name: string, fn: () => Promise<T>) => Promise<T> } {
  const timings: Record<string, number> = {};
  const timed = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    const v = await fn();
    timings[name] = Date.now() - started;
    return v;
  };
  return { timings, timed };
}
