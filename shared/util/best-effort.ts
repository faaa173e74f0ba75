// Clean-ups that must not fail the work around them (a leftover container, a temp directory) still say
// when they fail: silent failures are how leftovers pile up unnoticed until a disk is full.
import { createLogger } from '../logger.js';
import { oneLine } from './errors.js';

/** The one call a clean-up needs of a logger (a pino logger is one). */
export interface WarnLogger {
  warn(obj: object, msg: string): void;
}

let fallback: WarnLogger | null = null;

/** Where clean-up failures go when the caller passes no logger: the daemon's own, once it has one. */
export function setCleanupLogger(logger: WarnLogger): void {
  fallback = logger;
}

export interface BestEffortOptions {
  logger?: WarnLogger;
  /** Failures that mean "nothing to clean" (e.g. already removed): not logged. */
  ignore?: (err: unknown) => boolean;
}

/** Run a clean-up; a failure is logged at warn level naming `what`, never thrown. */
export async function bestEffort(what: string, work: Promise<unknown> | (() => Promise<unknown>), opts: BestEffortOptions = {}): Promise<void> {
  try {
    await (typeof work === 'function' ? work() : work);
  } catch (err) {
    if (opts.ignore?.(err)) return;
    fallback ??= createLogger('berth');
    (opts.logger ?? fallback).warn({ err: oneLine(err) }, `clean-up failed: ${what}`);
  }
}
