// Log lines that others can cause (an install manifest nobody can serve, bad WebSocket frames from a
// broken or hostile agent that reconnects to start over) are rate-limited: anyone can send a million
// of them, and the log must stay readable and bounded. Lines over the limit are counted, and the next
// line that is logged says how many were left out.

interface Window {
  start: number;
  used: number;
  suppressed: number;
}

/** Keys kept before windows that have run out are forgotten (keys are server names: few). */
const MAX_KEYS = 10_000;

export class LogThrottle {
  private readonly windows = new Map<string, Window>();

  constructor(
    /** Lines allowed per key and window. */
    private readonly burst: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * May one more line for `key` be logged? null: no (it is counted as suppressed); otherwise the
   * number of lines suppressed before this one, to be mentioned in it.
   */
  take(key: string): number | null {
    const t = this.now();
    let w = this.windows.get(key);
    if (!w || t - w.start >= this.windowMs) {
      if (!w && this.windows.size >= MAX_KEYS) this.forgetExpired(t);
      w = { start: t, used: 0, suppressed: w?.suppressed ?? 0 };
      this.windows.set(key, w);
    }
    if (w.used >= this.burst) {
      w.suppressed++;
      return null;
    }
    w.used++;
    const suppressed = w.suppressed;
    w.suppressed = 0;
    return suppressed;
  }

  private forgetExpired(t: number): void {
    for (const [k, w] of this.windows) if (t - w.start >= this.windowMs) this.windows.delete(k);
  }
}

export interface RateLimitedLog {
  /** Calls `emit(suppressed)` unless one was emitted within the window; `suppressed` counts the skipped ones since. */
  (emit: (suppressed: number) => void): void;
}

/** One line per window for a single source (a LogThrottle with one key and a burst of one). */
export function rateLimitedLog(windowMs = 60_000, now: () => number = Date.now): RateLimitedLog {
  const throttle = new LogThrottle(1, windowMs, now);
  return (emit) => {
    const suppressed = throttle.take('');
    if (suppressed !== null) emit(suppressed);
  };
}
