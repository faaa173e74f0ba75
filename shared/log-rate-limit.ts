// Log lines caused by unauthenticated requests (an install manifest nobody can serve, a bad WebSocket
// frame) are rate-limited: anyone can send a million of them, and the log must stay readable and
// bounded. The first one in each window is logged; the rest are counted and the next line says how
// many were left out.

export interface RateLimitedLog {
  /** Calls `emit(suppressed)` unless one was emitted within the window; `suppressed` counts the skipped ones since. */
  (emit: (suppressed: number) => void): void;
}

export function rateLimitedLog(windowMs = 60_000, now: () => number = Date.now): RateLimitedLog {
  let last = -Infinity;
  let suppressed = 0;
  return (emit) => {
    const t = now();
    if (t - last < windowMs) {
      suppressed++;
      return;
    }
    last = t;
    const skipped = suppressed;
    suppressed = 0;
    emit(skipped);
  };
}
