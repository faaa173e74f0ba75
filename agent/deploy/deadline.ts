// Per-phase deadlines: no deploy stays in a phase forever. A phase runs with its own abort signal,
// aborted at the deadline (or when the deploy is cancelled/stopped); the runner stops waiting then
// even if the work ignores its signal, after giving it a short moment to unwind so its cleanup
// (a killed build, a removed container) happens before the deploy's own.
import type { DeployStatus } from '../../shared/deploy-status.js';

export class PhaseDeadlineExceeded extends Error {
  override name = 'PhaseDeadlineExceeded';
  constructor(
    readonly phase: DeployStatus,
    readonly limitMs: number,
    readonly setting: string,
  ) {
    super(`the ${phase} phase did not finish within its deadline of ${formatDuration(limitMs)} (${setting})`);
  }
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  return s % 60 === 0 ? `${s / 60} min` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

/** How long abandoned work may take to unwind after its signal was aborted. */
const UNWIND_MS = 10_000;

export interface PhaseLimit {
  phase: DeployStatus;
  ms: number;
  /** The setting that configures it, named in the failure reason. */
  setting: string;
}

/**
 * Run `work` under `limit`. Rejects with PhaseDeadlineExceeded at the deadline, or with the parent's
 * abort reason when the deploy is cancelled or the agent stops.
 */
export async function withDeadline<T>(limit: PhaseLimit, parent: AbortSignal, work: (signal: AbortSignal) => Promise<T>, unwindMs = UNWIND_MS): Promise<T> {
  parent.throwIfAborted();
  const ctl = new AbortController();
  const exceeded = new PhaseDeadlineExceeded(limit.phase, limit.ms, limit.setting);
  const onParent = () => ctl.abort(parent.reason);
  parent.addEventListener('abort', onParent, { once: true });
  const timer = setTimeout(() => ctl.abort(exceeded), limit.ms);
  const stopped = new Promise<never>((_, reject) => ctl.signal.addEventListener('abort', () => reject(ctl.signal.reason), { once: true }));
  stopped.catch(() => {});
  const running = Promise.resolve().then(() => {
    ctl.signal.throwIfAborted(); // stopped before it began: it never starts
    return work(ctl.signal);
  });
  running.catch(() => {}); // settles later when abandoned: not an unhandled rejection
  try {
    return await Promise.race([running, stopped]);
  } catch (err) {
    if (!ctl.signal.aborted) throw err;
    // Abandoned: let it unwind (bounded), then report why it was stopped, not how it reacted.
    let unwind: NodeJS.Timeout | undefined;
    await Promise.race([running.then(() => {}, () => {}), new Promise((r) => (unwind = setTimeout(r, unwindMs)))]);
    clearTimeout(unwind);
    throw ctl.signal.reason;
  } finally {
    clearTimeout(timer);
    parent.removeEventListener('abort', onParent);
  }
}
