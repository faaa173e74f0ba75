// Waiting and ordering: one abortable sleep and one serial queue for the whole code base.

/**
 * Wait `ms`, or less when `signal` aborts: an abort resolves early instead of rejecting, so a loop
 * that sleeps between polls checks `signal.aborted` (or calls `signal.throwIfAborted()`) itself and
 * decides what an abort means there.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Runs the tasks given to `run` one at a time, in call order. A task that fails rejects only its own
 * promise: the next one still runs.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T> | T): Promise<T> {
    const next = this.tail.then(task, task);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

/**
 * `fn` over every item with at most `limit` calls in flight, results in the items' order. A call
 * that rejects rejects the whole map (callers that want best effort catch inside `fn`).
 */
export async function mapConcurrent<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}
